"""A real webhook receiver for tests: an aiohttp server on a loopback port that records every POST,
and can fail the first tries of each webhook-id to make the sender retry. Tests wait on what it
received (a condition signalled per request), never on the clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    # What the receiver answered.
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass
class WebhookReceiver:
    base_url: str = ""
    # Answer 500 to the first `fail_first` tries of every webhook-id, then 2xx.
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str = "/hook") -> str:
        return self.base_url + path

    def tries_of(self, webhook_id: str) -> list[Received]:
        return [item for item in self.received if item.webhook_id == webhook_id]

    def accepted(self) -> list[Received]:
        return [item for item in self.received if 200 <= item.status < 300]

    async def wait_until(self, check: Callable[[], bool], *, deadline_seconds: float = 60.0) -> None:
        """Returns once `check()` holds, re-checked after every request received."""
        async with asyncio.timeout(deadline_seconds), self._changed:
            await self._changed.wait_for(check)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name.lower(): value for name, value in request.headers.items()}
        earlier = sum(1 for item in self.received if item.webhook_id == headers.get("webhook-id", ""))
        status = 500 if earlier < self.fail_first else 204
        async with self._changed:
            self.received.append(Received(headers, body, status))
            self._changed.notify_all()
        return web.Response(status=status)


@asynccontextmanager
async def webhook_receiver(*, fail_first: int = 0) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(fail_first=fail_first)
    app = web.Application()
    app.router.add_post("/{path:.*}", receiver._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
