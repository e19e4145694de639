"""Our own fake of an OpenAI-compatible `/v1/moderations` endpoint (an external API we cannot run
in tests), served over real HTTP by aiohttp. It answers from a script, then with `default`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

HANG = "hang"  # a scripted answer: hold the request until the test ends


def result(flagged: bool, **scores: float) -> dict[str, Any]:
    names = {name.replace("__", "/").replace("_", "-"): score for name, score in scores.items()}
    return {
        "id": "modr-1",
        "model": "omni-moderation-latest",
        "results": [
            {
                "flagged": flagged,
                "categories": {name: flagged and score >= 0.5 for name, score in names.items()},
                "category_scores": names,
            }
        ],
    }


@dataclass
class FakeClassifier:
    script: list[Any] = field(default_factory=list)  # dict bodies, int statuses, or HANG
    default: Any = field(default_factory=lambda: result(False, violence=0.01))
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    base_url: str = ""

    async def moderate(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        answer = self.script.pop(0) if self.script else self.default
        if answer == HANG:
            await self.released.wait()
            return web.json_response(self.default)
        if isinstance(answer, int):
            return web.json_response({"error": {"message": "upstream trouble"}}, status=answer)
        return web.json_response(answer)


@asynccontextmanager
async def serve_fake(fake: FakeClassifier) -> AsyncIterator[FakeClassifier]:
    app = web.Application()
    app.router.add_post("/v1/moderations", fake.moderate)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        fake.released.set()
        await runner.cleanup()
