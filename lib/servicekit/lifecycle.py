"""Process lifecycle: SIGTERM/SIGINT set an event that the service's main coroutine awaits."""

from __future__ import annotations

import asyncio
import signal


def stop_event_on_signals(loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Event:
    loop = loop or asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def wait_for_signal(*events: asyncio.Event, seconds: float) -> None:
    """Return when any event is set or after `seconds`, whichever comes first."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
