"""Poster and thumbnail made with Pillow from a real frame of a real H.264 file."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
from PIL import Image, ImageStat

from services.renderer.probe import make_stills


def test_a_poster_at_full_size_and_a_thumbnail_320_wide_come_from_a_real_frame(tmp_path):
    video = tmp_path / "source.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=24",
            "-t",
            "1.5",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(video),
        ],
        check=True,
        timeout=60,
    )
    poster, thumbnail = tmp_path / "poster.jpg", tmp_path / "thumbnail.webp"
    make_stills(video, poster, thumbnail, 320)
    with Image.open(poster) as image:
        assert (image.format, image.size) == ("JPEG", (640, 360))
        assert not image.getexif()  # nothing but pixels
        # A decoded test pattern, not a blank frame: the channels vary across the picture.
        assert max(ImageStat.Stat(image.convert("RGB")).stddev) > 20
    with Image.open(thumbnail) as image:
        assert (image.format, image.size) == ("WEBP", (320, 180))


def test_without_a_thumbnail_path_only_the_poster_is_written(tmp_path):
    video = tmp_path / "source.mp4"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "color=c=red:size=160x90:rate=24",
            "-t",
            "1",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(video),
        ],
        check=True,
        timeout=60,
    )
    make_stills(video, tmp_path / "poster.jpg", None, 320)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["poster.jpg", "source.mp4"]
