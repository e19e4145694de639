"""The API's own description: `GET /openapi.json` (built from the route table once the app starts)
and `GET /docs`, Swagger UI served from the pinned `swagger-ui-bundle-v2` package, so the page
works without reaching the internet. Neither needs an API key (auth covers /v1 only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from services.gateway.api_docs import openapi_document

TITLE = "Vidflow API"
VERSION = "1.0.0"
DESCRIPTION = (
    "OpenAI's Videos API (`/v1/videos`), so the official `openai` SDK works by changing `base_url`, "
    "plus Vidflow's extensions (tagged *Vidflow extensions* and marked `x-vidflow-extension`). "
    "Every error is an OpenAI error body; another user's ids answer 404."
)
OPENAPI_JSON = web.AppKey("openapi_json", bytes)
ASSETS = "/docs/assets"
# Relative URLs, so the page also works behind a proxy that mounts the gateway under a prefix.
_PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{TITLE}</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""
_INIT_SCRIPT = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
"""
# Scripts only from here (no inline script); Swagger UI sets inline styles and data: images.
_CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"


def add_docs_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_get("/docs/init.js", docs_init_script)
    app.router.add_static(ASSETS, Path(str(swagger_ui_path)))
    app.on_startup.append(_build_document)


def build_openapi(app: web.Application) -> dict[str, Any]:
    return openapi_document(app.router.routes(), title=TITLE, version=VERSION, description=DESCRIPTION)


async def _build_document(app: web.Application) -> None:
    # Once every route is registered; the document never changes while the app runs.
    app[OPENAPI_JSON] = json.dumps(build_openapi(app), indent=1).encode()


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_JSON], content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    response = web.Response(text=_PAGE, content_type="text/html")
    response.headers["Content-Security-Policy"] = _CONTENT_SECURITY_POLICY
    return response


async def docs_init_script(request: web.Request) -> web.Response:
    return web.Response(text=_INIT_SCRIPT, content_type="text/javascript")
