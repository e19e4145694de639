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
