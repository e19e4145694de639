"""The web app: one page of plain ES modules and CSS (no build step, nothing from a CDN) that calls
/v1 with the user's API key. Its files need no key; the page sends the key only in the
Authorization header (and in the live socket's first message), never in a URL."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from servicekit.errors import ErrorKind, ServiceError

WEBAPP_DIR = Path(__file__).with_name("webapp")
INDEX = WEBAPP_DIR / "index.html"
ASSETS_PATH = "/app/{name}"
# Only the files shipped beside the page, so no request can name anything else on disk.
ASSETS = {path.name: path for path in WEBAPP_DIR.iterdir() if path.suffix in {".js", ".css", ".svg"}}
_CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# Scripts and styles only from here. Renditions play from presigned storage URLs (another origin);
# the original video, the poster and thumbnails are fetched with the key and shown as blob: URLs.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "media-src 'self' blob: http: https:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
# Revalidate on every load (a 304 is cheap), so a new release never runs with a stale module.
_CACHE_CONTROL = "no-cache"


def add_webapp_routes(app: web.Application) -> None:
    app.router.add_get("/", index_page)
    app.router.add_get(ASSETS_PATH, asset)


async def index_page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(
        INDEX,
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Cache-Control": _CACHE_CONTROL,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def asset(request: web.Request) -> web.StreamResponse:
    path = ASSETS.get(request.match_info["name"])
    if path is None:
        raise ServiceError(ErrorKind.NOT_FOUND, "Unknown request URL.")
    return web.FileResponse(
        path,
        headers={
            "Content-Type": f"{_CONTENT_TYPES[path.suffix]}; charset=utf-8",
            "Cache-Control": _CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        },
    )
