"""Running ffmpeg: a subprocess off the event loop, with a timeout, killed on timeout or
cancellation, whose failure is a clear render error."""

from __future__ import annotations

import asyncio
import contextlib

from servicekit.errors import ErrorKind, ServiceError

from services.renderer.domain.renditions import render_failed


async def run_ffmpeg(args: list[str], *, timeout_seconds: float) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except TimeoutError:
        await _kill(process)
        raise ServiceError(
            ErrorKind.UNAVAILABLE,
            f"rendering took longer than {timeout_seconds:g} s; retry later",
            code="render_timeout",
        ) from None
    except BaseException:
        await _kill(process)
        raise
    if process.returncode != 0:
        detail = stderr.decode(errors="replace").strip().splitlines()
        raise render_failed(
            f"ffmpeg could not render the video: {detail[-1] if detail else f'exit {process.returncode}'}"
        )


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
