"""The renditions ladder of an ingested video, and HLS when asked for.

Crash safety: ffmpeg writes into a private temp dir; only finished files are uploaded (each
upload replaces the whole object, so a redo overwrites a half-done earlier attempt's objects
with complete ones); the rows are written last, in one transaction. Rows are the source of
truth: until they exist nothing is listed, and a retry that finds no rows redoes the work.
ffmpeg runs as a subprocess with a timeout, off the event loop, and is killed on timeout or
cancellation.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from servicekit.errors import ServiceError

from services.renderer.domain import StoredAsset, job_prefix
from services.renderer.domain.probe import MediaProbe
from services.renderer.domain.renditions import (
    HLS_DIR,
    HLS_MASTER,
    RENDITIONS_DIR,
    RenditionRecord,
    Rung,
    hls_command,
    ladder_command,
    plan_ladder,
    render_failed,
    rendition_file,
)
from services.renderer.ffmpeg import run_ffmpeg
from services.renderer.media_store import MediaStore
from services.renderer.probe import probe_video
from services.renderer.store import RenditionStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenditionOptions:
    upscale: bool = False
    hls: bool = False


class RenditionMaker:
    def __init__(
        self,
        media: MediaStore,
        store: RenditionStore,
        *,
        ffmpeg: str,
        ladder: tuple[int, ...],
        timeout_seconds: float,
    ) -> None:
        self._media = media
        self._store = store
        self._ffmpeg = ffmpeg
        self._ladder = ladder
        self._timeout = timeout_seconds

    async def ensure(self, video: StoredAsset, options: RenditionOptions) -> list[RenditionRecord]:
        """The job's renditions: from the rows if there are any, made (once) otherwise."""
        existing = await self._store.for_job(owner_id=video.owner_id, job_id=video.job_id)
        if existing:
            return existing
        rungs = plan_ladder(video.probe.width, video.probe.height, self._ladder, upscale=options.upscale)
        if not rungs:
            return []
        workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=f"renditions-{video.job_id}-"))
        try:
            records = await self._make(video, rungs, options, workdir)
        finally:
            await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)
        await self._store.record(records)
        log.info("renditions made", extra={"job_id": video.job_id, "rungs": [r.name for r in rungs]})
        # Like a retry would: a concurrent maker of the same job may have recorded first.
        return await self._store.for_job(owner_id=video.owner_id, job_id=video.job_id)

    async def _make(
        self, video: StoredAsset, rungs: list[Rung], options: RenditionOptions, workdir: Path
    ) -> list[RenditionRecord]:
        source = workdir / "source.mp4"
        if not await self._media.download(video.object_key, source):
            raise render_failed("the stored source video is missing")
        has_audio = bool(video.probe.audio_codec)
        out_dir = workdir / "out"
        out_dir.mkdir()
        await self._run(ladder_command(self._ffmpeg, source, rungs, out_dir, has_audio=has_audio))
        prefix = job_prefix(video.owner_id, video.job_id)
        probes: dict[str, MediaProbe] = {}
        for rung in rungs:
            try:
                probes[rung.name] = await asyncio.to_thread(probe_video, out_dir / rendition_file(rung))
            except ServiceError as exc:
                raise render_failed(f"the {rung.name} rendition is unreadable: {exc.message}") from None
        hls_master_key: str | None = None
        hls_files: list[Path] = []
        if options.hls:
            hls_dir = workdir / HLS_DIR
            for rung in rungs:
                (hls_dir / rung.name).mkdir(parents=True)
            await self._run(hls_command(self._ffmpeg, out_dir, rungs, hls_dir, has_audio=has_audio))
            hls_files = sorted(p for p in hls_dir.rglob("*") if p.is_file())
            hls_master_key = f"{prefix}{HLS_DIR}/{HLS_MASTER}"
        # Everything is finished on disk: only now does anything become an object.
        records = []
        for rung in rungs:
            key = f"{prefix}{RENDITIONS_DIR}/{rendition_file(rung)}"
            await self._media.upload(out_dir / rendition_file(rung), key, "video/mp4")
            probe = probes[rung.name]
            records.append(
                RenditionRecord(
                    job_id=video.job_id,
                    owner_id=video.owner_id,
                    name=rung.name,
                    width=probe.width,
                    height=probe.height,
                    bit_rate=probe.bit_rate,
                    has_audio=bool(probe.audio_codec),
                    remuxed=rung.remux,
                    object_key=key,
                    content_type="video/mp4",
                    size_bytes=probe.size_bytes,
                    hls_master_key=hls_master_key,
                )
            )
        # Segments and variant playlists before the master, so the master never points at nothing.
        for path in sorted(hls_files, key=lambda p: p.name == HLS_MASTER):
            relative = path.relative_to(workdir).as_posix()
            content_type = "application/vnd.apple.mpegurl" if path.suffix == ".m3u8" else "video/mp2t"
            await self._media.upload(path, prefix + relative, content_type)
        return records

    async def _run(self, args: list[str]) -> None:
        await run_ffmpeg(args, timeout_seconds=self._timeout)
