"""Renditions ladder: the renderer's own one-process ffmpeg command against two references.

What runs (all ffmpeg is the static build imageio-ffmpeg ships; no servers are needed, since the
ladder's cost is ffmpeg's and the upload/probe around it is measured by the service tests):
- a 12-second 1280x720 24 fps H.264/AAC source, made once;
- "ladder": `ladder_command` from the renderer with upscale on, so 1080p (transcoded), 720p
  (remuxed: the source's short side) and 480p (transcoded) are all made, in one process;
- "default": the ladder as the service makes it for this source when nobody asks for upscaling:
  the 1080p rung is skipped (it would be an upscale), 720p remuxed, 480p transcoded;
- "naive": three separate ffmpeg runs, one per rung, each decoding the source and re-encoding,
  the 720p rung too;
- "best": the best single command written by hand for the same three outputs (one decode, split,
  scale per rung, the 720p rung stream-copied) with x264's threads left to pick per output.
Each is run `--repeat` times, interleaved; medians are reported, with the ratios ladder/naive
(goal <= 0.35) and ladder/best (goal <= 1.1), as text and as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

from services.renderer.domain.renditions import (
    AAC_BIT_RATE,
    X264_CRF,
    X264_PRESET,
    ladder_command,
    parse_ladder,
    plan_ladder,
)

NAME = "renditions_ladder"
GOAL_VS_NAIVE = 0.35
GOAL_VS_BEST = 1.1


def _run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, timeout=600, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def _encode(width: int, height: int) -> list[str]:
    return [
        "-vf", f"scale={width}:{height}", "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF),
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", AAC_BIT_RATE, "-movflags", "+faststart",
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m bench {NAME}")
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args(argv)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    base = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    workdir = Path(tempfile.mkdtemp(prefix="vidflow-bench-ladder-"))
    try:
        source = workdir / "source.mp4"
        try:
            _run([
                *base, "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=24:duration={options.seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=440:duration={options.seconds}",
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(source),
            ])  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"{NAME}: setup failed: {exc!r}", file=sys.stderr)
            return 1
        rungs = plan_ladder(1280, 720, parse_ladder("1080,720,480"), upscale=True)
        out = workdir / "out"
        out.mkdir()
        ladder = ladder_command(ffmpeg, source, rungs, out, has_audio=True)
        default_rungs = plan_ladder(1280, 720, parse_ladder("1080,720,480"), upscale=False)
        default_out = out / "default"
        default_out.mkdir()
        default = ladder_command(ffmpeg, source, default_rungs, default_out, has_audio=True)
        naive = [[*base, "-i", str(source), *_encode(r.width, r.height), str(out / f"naive-{r.name}.mp4")]
                 for r in rungs]  # fmt: skip
        best = [
            *base, "-i", str(source), "-filter_complex",
            "[0:v]split=2[a][b];[a]scale=1920:1080[hd];[b]scale=854:480[sd]",
            "-map", "[hd]", "-map", "0:a", "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF),
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", AAC_BIT_RATE, "-movflags", "+faststart",
            str(out / "best-1080p.mp4"),
            "-map", "0:v", "-map", "0:a", "-c", "copy", "-movflags", "+faststart", str(out / "best-720p.mp4"),
            "-map", "[sd]", "-map", "0:a", "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF),
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", AAC_BIT_RATE, "-movflags", "+faststart",
            str(out / "best-480p.mp4"),
        ]  # fmt: skip
        times: dict[str, list[float]] = {"ladder": [], "default": [], "naive": [], "best": []}
        for _ in range(options.repeat):
            times["ladder"].append(_run(ladder))
            times["default"].append(_run(default))
            times["naive"].append(sum(_run(command) for command in naive))
            times["best"].append(_run(best))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    vs_naive = medians["ladder"] / medians["naive"]
    vs_best = medians["ladder"] / medians["best"]
    default_vs_naive = medians["default"] / medians["naive"]
    made = ", ".join(f"{r.name} {r.width}x{r.height} {'remux' if r.remux else 'x264'}" for r in rungs)
    print(f"{NAME}: {options.seconds} s 1280x720 source -> {made}; median of {options.repeat}")
    for name, value in medians.items():
        print(f"  {name:<7} {value:6.2f} s")
    met = {True: "met", False: "NOT met"}
    print(f"  ladder/naive {vs_naive:.2f} (goal <= {GOAL_VS_NAIVE}: {met[vs_naive <= GOAL_VS_NAIVE]})")
    print(f"  ladder/best  {vs_best:.2f} (goal <= {GOAL_VS_BEST}: {met[vs_best <= GOAL_VS_BEST]})")
    print(
        f"  default/naive {default_vs_naive:.2f} (the service's own ladder for this source, "
        f"{', '.join(r.name for r in default_rungs)}; goal <= {GOAL_VS_NAIVE}: "
        f"{met[default_vs_naive <= GOAL_VS_NAIVE]})"
    )
    print(json.dumps({
        "benchmark": NAME, "source_seconds": options.seconds, "repeat": options.repeat,
        "rungs": [r.name for r in rungs], "median_seconds": {k: round(v, 3) for k, v in medians.items()},
        "ladder_vs_naive": round(vs_naive, 3), "ladder_vs_best": round(vs_best, 3),
        "default_rungs": [r.name for r in default_rungs], "default_vs_naive": round(default_vs_naive, 3),
        "goal_vs_naive": GOAL_VS_NAIVE, "goal_vs_best": GOAL_VS_BEST,
    }))  # fmt: skip
    return 0
