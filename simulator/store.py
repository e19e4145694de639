"""The in-memory video registry and the background renders it owns.

Jobs live only as long as the process, like the short-lived state of a real provider's queue.
Each job has one background task: render, wait until the job is due, and announce the outcome
(`video.completed` / `video.failed`) to the event sink, so a webhook fires when a poll would
first see the final status. Chaos decides a job's fate here (forced failure, early expiry,
refused prompts) without touching the HTTP layer.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from simulator.chaos import Chaos, JobPlan
from simulator.domain import (
    Failure,
    IdempotencyConflict,
    ListParams,
    NotFound,
    Page,
    Timing,
    Video,
    VideoSpec,
    VideoState,
    due_at,
    new_video_id,
    observe,
    paginate,
    poll_after_ms,
    refusal,
    remix_spec,
    require_remixable,
)
from simulator.media import RenderedFiles, RenderError, files_in

log = logging.getLogger(__name__)


class Renderer(Protocol):
    async def render(self, spec: VideoSpec, directory: Path) -> None:
        """Write the video's assets into `directory`; raise RenderError on failure."""


FinishedEvent = Literal["video.completed", "video.failed"]


class EventSink(Protocol):
    def __call__(self, event_type: FinishedEvent, video_id: str) -> object:
        """Called once when a video reaches completed or failed; must not block."""


@dataclass(frozen=True)
class _IdempotentRequest:
    """What an Idempotency-Key was first used for; a retry must ask for the same thing."""

    spec: VideoSpec
    remixed_from_video_id: str | None
    video_id: str


class VideoStore:
    def __init__(
        self,
        *,
        renderer: Renderer,
        data_dir: Path,
        timing: Timing,
        max_concurrent_renders: int,
        clock: Callable[[], float] = time.time,
        chaos: Chaos | None = None,
        on_finished: EventSink | None = None,
    ) -> None:
        self._renderer = renderer
        self._chaos = chaos or Chaos()
        self._on_finished = on_finished
        self._data_dir = data_dir
        self._timing = timing
        self._clock = clock
        self._render_slots = asyncio.Semaphore(max_concurrent_renders)
        # Insertion order is creation order, which listing relies on.
        self._videos: dict[str, Video] = {}
        self._renders: dict[str, asyncio.Task[None]] = {}
        self._idempotency: dict[tuple[str, str], _IdempotentRequest] = {}

    def now(self) -> float:
        return self._clock()

    def state(self, video: Video) -> VideoState:
        return observe(video, self._clock(), self._timing)

    def poll_after_ms(self, video: Video) -> int:
        return poll_after_ms(video, self._clock(), self._timing)

    def files(self, video: Video) -> RenderedFiles:
        return files_in(self._data_dir / video.id)

    def create(
        self,
        spec: VideoSpec,
        *,
        owner: str,
        idempotency_key: str | None = None,
        remixed_from_video_id: str | None = None,
    ) -> Video:
        """Register a job and start rendering it; a repeated Idempotency-Key returns the first job.

        No await between the idempotency check and the insert, so concurrent retries cannot both
        create a video.
        """
        if (term := self._chaos.refused_term(spec.prompt)) is not None:
            raise refusal(term)
        scope = (owner, idempotency_key) if idempotency_key else None
        if scope is not None and (earlier := self._idempotency.get(scope)) is not None:
            if (earlier.spec, earlier.remixed_from_video_id) != (spec, remixed_from_video_id):
                raise IdempotencyConflict(
                    "This Idempotency-Key was already used with different request parameters.",
                    param=None,
                    code="idempotency_key_reused",
                )
            return self._videos[earlier.video_id]
        plan = self._chaos.plan_job()
        video = Video(
            id=new_video_id(),
            spec=spec,
            created_at=self._clock(),
            remixed_from_video_id=remixed_from_video_id,
            asset_ttl_seconds=plan.expires_after_seconds,
        )
        self._videos[video.id] = video
        if scope is not None:
            self._idempotency[scope] = _IdempotentRequest(spec, remixed_from_video_id, video.id)
        self._renders[video.id] = asyncio.create_task(self._generate(video, plan), name=f"render {video.id}")
        log.info(
            "video created",
            extra={"video_id": video.id, "model": spec.model, "size": spec.size, "seconds": spec.seconds},
        )
        return video

    def remix(self, source_id: str, prompt: str, *, owner: str, idempotency_key: str | None = None) -> Video:
        source = self.get(source_id)
        require_remixable(source, self.state(source))
        return self.create(
            remix_spec(source.spec, prompt),
            owner=owner,
            idempotency_key=idempotency_key,
            remixed_from_video_id=source.id,
        )

    def get(self, video_id: str) -> Video:
        video = self._videos.get(video_id)
        if video is None:
            raise NotFound(f"Video with id '{video_id}' not found.", param="video_id", code="video_not_found")
        return video

    def list(self, params: ListParams) -> Page:
        return paginate(list(self._videos.values()), params)

    async def delete(self, video_id: str) -> None:
        video = self.get(video_id)
        del self._videos[video_id]
        self._idempotency = {
            scope: earlier for scope, earlier in self._idempotency.items() if earlier.video_id != video_id
        }
        render = self._renders.pop(video_id, None)
        if render is not None:
            # Wait for the cancelled render so ffmpeg is gone before its directory is removed.
            render.cancel()
            await asyncio.gather(render, return_exceptions=True)
        await asyncio.to_thread(shutil.rmtree, self._data_dir / video.id, ignore_errors=True)
        log.info("video deleted", extra={"video_id": video_id})

    async def close(self) -> None:
        renders = list(self._renders.values())
        for render in renders:
            render.cancel()
        await asyncio.gather(*renders, return_exceptions=True)

    async def _generate(self, video: Video, plan: JobPlan) -> None:
        """Render, then wait until the job is due, then announce the outcome; cancelled on delete."""
        try:
            if plan.fail:
                await self._wait_until(video.created_at + self._timing.generation_seconds / 2)
                video.failure = Failure(
                    "video_generation_failed", "Video generation failed (simulated by chaos).", self._clock()
                )
                log.info("video failed by chaos", extra={"video_id": video.id})
            else:
                await self._render(video)
            if video.failure is None:
                await self._wait_until(due_at(video, self._timing))
        finally:
            self._renders.pop(video.id, None)
        if video.failure is not None:
            await asyncio.to_thread(shutil.rmtree, self._data_dir / video.id, ignore_errors=True)
        if self._on_finished is not None:
            self._on_finished("video.failed" if video.failure else "video.completed", video.id)

    async def _render(self, video: Video) -> None:
        directory = self._data_dir / video.id
        try:
            async with self._render_slots:
                started = self._clock()
                await self._renderer.render(video.spec, directory)
        except RenderError as exc:
            video.failure = Failure(
                "video_generation_failed", f"Video generation failed: {exc}", self._clock()
            )
            log.warning("video failed", extra={"video_id": video.id, "reason": str(exc)})
        except Exception:
            log.exception("render crashed", extra={"video_id": video.id})
            video.failure = Failure("internal_error", "Video generation failed unexpectedly.", self._clock())
        else:
            video.rendered_at = self._clock()
            log.info(
                "video rendered",
                extra={"video_id": video.id, "render_seconds": round(video.rendered_at - started, 3)},
            )

    async def _wait_until(self, deadline: float) -> None:
        # Not a poll: one sleep, re-checked because the loop's monotonic timer may wake a hair
        # before the wall clock that `observe` uses reaches the deadline.
        while (remaining := deadline - self._clock()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
