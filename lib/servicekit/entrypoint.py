"""The shared `python -m services.<name> [serve|migrate]` entrypoint body."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar

from servicekit.config import env_str
from servicekit.lifecycle import stop_event_on_signals
from servicekit.logging import configure_logging
from servicekit.metrics import setup_metrics
from servicekit.telemetry import setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)
SettingsT = TypeVar("SettingsT")


def run_service(
    name: str,
    load_settings: Callable[[], SettingsT],
    serve: Callable[[SettingsT], AbstractAsyncContextManager[Any]],
    migrate: Callable[[SettingsT], None] | None = None,
) -> None:
    configure_logging(name, env_str("LOG_LEVEL", "INFO"))
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    try:
        settings = load_settings()
    except ValueError as exc:
        log.error("bad configuration", extra={"error": str(exc)})
        raise SystemExit(2) from None
    if command == "migrate" and migrate is not None:
        migrate(settings)
        log.info("migrated")
        return
    if command != "serve":
        raise SystemExit(f"usage: python -m services.{name} [serve{'|migrate' if migrate else ''}]")
    setup_tracing(f"vidflow-{name}")
    setup_metrics(f"vidflow-{name}")
    asyncio.run(_serve_until_stopped(serve, settings))
    shutdown_tracing()


async def _serve_until_stopped(
    serve: Callable[[SettingsT], AbstractAsyncContextManager[Any]], settings: SettingsT
) -> None:
    stop = stop_event_on_signals()
    async with serve(settings):
        # Start-up objects (modules, protobuf descriptors, pools) live until exit: keep them out
        # of every later full collection, which otherwise shows as tail latency under load.
        gc.freeze()
        log.info("ready")
        await stop.wait()
        log.info("stopping")
    log.info("stopped")
