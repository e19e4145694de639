"""OpenAPI links in the gateway's document: every operation that takes an id is reachable from the
answer that makes the id, each link's expression points at a field the answer's schema has, and a
link to an operation or parameter that does not exist fails the build."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import web

from services.gateway.api_docs import documented, links_to, openapi_document
from services.gateway.app import make_app
from services.gateway.config import Settings
from services.gateway.docs_routes import build_openapi

DOCUMENT = build_openapi(make_app(Settings(database_url="postgresql://unused.invalid/vidflow")))
# Path parameters no answer makes: a deployment is configuration, not a resource.
NOT_MADE_BY_THE_API = {"deployment"}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, route_path, operation)
        for route_path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
    ]


def _links() -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(source operation, its response, link) for every link in the document."""
    return [
        (operation, response, link)
        for _, _, operation in _operations()
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for choice in schema.get("anyOf", []):  # a nullable schema: the non-null branch
        if choice.get("type") != "null":
            return _resolve(choice)
    return schema


def _has_pointer(schema: dict[str, Any], pointer: str) -> bool:
    for token in pointer.strip("/").split("/"):
        schema = _resolve(schema)
        if token.isdigit():
            schema = schema.get("items", {})
        else:
            schema = schema.get("properties", {}).get(token, {})
        if not schema:
            return False
    return True


def test_every_id_an_operation_takes_comes_from_a_link():
    linked = {(link["operationId"], parameter) for _, _, link in _links() for parameter in link["parameters"]}
    missing = [
        f"{method.upper()} {route_path} ({name})"
        for method, route_path, operation in _operations()
        for name in re.findall(r"\{(\w+)\}", route_path)
        if name not in NOT_MADE_BY_THE_API and (operation["operationId"], name) not in linked
    ]
    assert missing == []


def test_a_new_video_links_to_everything_done_with_a_video():
    create = DOCUMENT["paths"]["/v1/videos"]["post"]["responses"]["200"]["links"]
    targets = {link["operationId"] for link in create.values()}
    with_a_video = {
        operation["operationId"]
        for method, route_path, operation in _operations()
        if route_path.startswith("/v1/videos/{video_id}")
    }
    assert targets == with_a_video
    assert all(link["parameters"] == {"video_id": "$response.body#/id"} for link in create.values())


def test_each_link_reads_a_field_its_answer_has():
    for source, response, link in _links():
        schema = response["content"]["application/json"]["schema"]
        for expression in link["parameters"].values():
            prefix, _, pointer = expression.partition("#")
            assert prefix == "$response.body", (source["operationId"], expression)
            assert _has_pointer(schema, pointer), (source["operationId"], link["operationId"], expression)


def _document_with(links: dict[str, Any]) -> dict[str, Any]:
    routes = web.RouteTableDef()

    @routes.post("/v1/things")
    @documented("Make a thing", tags=["Things"], reply={"type": "object"}, links=links)
    async def make_thing(request: web.Request) -> web.Response:
        raise NotImplementedError

    @routes.get("/v1/things/{thing_id}")
    @documented("Get a thing", tags=["Things"], reply={"type": "object"})
    async def get_thing(request: web.Request) -> web.Response:
        raise NotImplementedError

    app = web.Application()
    app.router.add_routes(routes)
    return openapi_document(app.router.routes(), title="t", version="1")


def test_links_to_what_does_not_exist_fail_the_build():
    made = _document_with(links_to(["get_thing"], "thing_id"))
    assert made["paths"]["/v1/things"]["post"]["responses"]["200"]["links"] == {
        "GetThing": {"operationId": "get_thing", "parameters": {"thing_id": "$response.body#/id"}}
    }
    with pytest.raises(ValueError, match="names no documented operation"):
        _document_with(links_to(["get_nothing"], "thing_id"))
    with pytest.raises(ValueError, match="has no parameters"):
        _document_with(links_to(["get_thing"], "thing"))
