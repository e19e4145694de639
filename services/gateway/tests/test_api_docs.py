"""The OpenAPI document: every route is documented, the document is valid OpenAPI 3.1, and what the
handlers' formatters produce matches the schemas it publishes. No server: the app is built, not run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from aiohttp import web
from google.protobuf.timestamp_pb2 import Timestamp
from openapi_spec_validator import validate
from vidflow.jobs.v1 import jobs_pb2

from services.gateway.api_docs import (
    EXTENSION_TAG,
    NOT_API_PATHS,
    Access,
    Schema,
    api_routes,
    documented,
    openapi_document,
    operation_of,
    path,
    undocumented_routes,
)
from services.gateway.app import make_app
from services.gateway.config import Settings
from services.gateway.docs_routes import build_openapi
from services.gateway.openai_format import video_resource

OPENAI_SPEC = Path(__file__).resolve().parents[4] / "shared/reference/openai-videos-openapi.yml"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture(scope="module")
def app() -> web.Application:
    # Built, never started: no database or peer is contacted.
    return make_app(Settings(database_url="postgresql://unused.invalid/vidflow"))


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict[str, Any]:
    return build_openapi(app)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (route_path, method, operation)
        for route_path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_every_api_route_is_documented(app):
    missing = undocumented_routes(app.router.routes())
    assert missing == [], (
        f"{missing}: add @documented(...) from services.gateway.api_docs beside the route "
        "(see that module's docstring)"
    )


def test_every_route_that_reaches_a_backing_service_documents_503_and_504(document):
    """Downloads read media storage, and every route hands work to a peer or the database: each
    answers 503 `service_unavailable` while one is away, or 504 when a hung one runs its call out of
    time, so each says so, the provider webhook intake (no API key) included."""
    missing = [
        f"{method.upper()} {route_path}"
        for route_path, method, operation in operations(document)
        if not {"503", "504"} <= set(operation["responses"])
    ]
    assert missing == []
    content = document["paths"]["/v1/videos/{video_id}/content"]["get"]["responses"]
    assert content["503"] == {"$ref": "#/components/responses/Unavailable"}
    assert content["504"] == {"$ref": "#/components/responses/GatewayTimeout"}


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on the first problem


def test_every_route_of_the_app_is_in_the_document_but_probes_and_docs(app, document):
    documented_pairs = {(route_path, method.upper()) for route_path, method, _ in operations(document)}
    api = list(api_routes(app.router.routes()))
    with_docs = {
        (route.resource.canonical, route.method)
        for route in api
        if route.resource and operation_of(route.handler)
    }
    assert with_docs <= documented_pairs
    left_out = {
        route.resource.canonical for route in app.router.routes() if route not in api and route.resource
    }
    # Only probes, the docs and their static files, and the HEAD twin of each GET.
    api_paths = {route.resource.canonical for route in api if route.resource}
    assert left_out - {"/docs/assets"} - set(NOT_API_PATHS) <= api_paths


def test_operations_are_unique_and_complete(document):
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids)), ids
    for route_path, method, operation in operations(document):
        where = f"{method.upper()} {route_path}"
        assert operation["summary"] and operation["tags"], where
        assert any(status.startswith("2") for status in operation["responses"]), where
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert "{" + parameter["name"] + "}" in route_path, where


def test_authenticated_routes_declare_401_and_admin_routes_403(document):
    for route_path, method, operation in operations(document):
        where = f"{method.upper()} {route_path}"
        if route_path.startswith("/v1/"):
            assert "security" not in operation, f"{where} must not opt out of the API key"
            assert "401" in operation["responses"], where
        if operation.get("x-vidflow-admin-only"):
            assert "403" in operation["responses"], where
    assert {scheme["scheme"] for scheme in document["components"]["securitySchemes"].values()} == {"bearer"}
    assert document["components"]["securitySchemes"]["JwtAuth"]["bearerFormat"] == "JWT"


def _openai_routes() -> set[tuple[str, str]]:
    """(method, path) of every operation in OpenAI's published spec, under our /v1 prefix."""
    if not OPENAI_SPEC.is_file():
        pytest.skip(f"OpenAI's spec not found at {OPENAI_SPEC} (CI checks out shared/ beside the repository)")
    spec = yaml.safe_load(OPENAI_SPEC.read_text())
    return {(method, "/v1" + route_path) for route_path, item in spec["paths"].items() for method in item}


def test_extensions_are_marked_and_tagged_and_openais_routes_are_not(document):
    openai_routes = _openai_routes()
    for route_path, method, operation in operations(document):
        is_openai = (method, route_path) in openai_routes
        assert operation.get("x-vidflow-extension", False) is not is_openai, (method, route_path)
        assert (EXTENSION_TAG in operation["tags"]) is not is_openai, (method, route_path)
    video = document["components"]["schemas"]["VideoResource"]["properties"]
    assert video["queue_position"]["x-vidflow-extension"] is True
    assert "x-vidflow-extension" not in video["status"]


def test_every_error_response_is_an_openai_error_body(document):
    error_schema = {"$ref": "#/components/schemas/Error"}
    for response in document["components"]["responses"].values():
        assert response["content"]["application/json"]["schema"] == error_schema
    for route_path, method, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert response["$ref"].startswith("#/components/responses/"), (method, route_path, status)


def _validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    root = {"components": document["components"], "$ref": f"#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(root)


def _timestamp(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


@pytest.mark.parametrize(
    "job",
    [
        jobs_pb2.Job(
            id="video_1",
            model="sora-2",
            status=jobs_pb2.JOB_STATUS_QUEUED,
            prompt="a cat",
            size="720x1280",
            seconds=4,
            create_time=_timestamp(1_700_000_000),
            queue_position=3,
        ),
        jobs_pb2.Job(
            id="video_2",
            model="sora-2-pro",
            status=jobs_pb2.JOB_STATUS_COMPLETED,
            progress=100,
            prompt="a dog",
            size="1920x1080",
            seconds=12,
            create_time=_timestamp(1_700_000_000),
            complete_time=_timestamp(1_700_000_060),
            reference_image_count=2,
        ),
        jobs_pb2.Job(
            id="video_3",
            model="sora-2",
            status=jobs_pb2.JOB_STATUS_FAILED,
            prompt="a storm",
            size="1280x720",
            seconds=8,
            create_time=_timestamp(1_700_000_000),
            error=jobs_pb2.JobError(code="cancelled", message="The video was cancelled."),
        ),
    ],
    ids=["queued", "completed", "failed"],
)
def test_the_video_object_the_gateway_returns_matches_its_schema(document, job):
    errors = [
        error.message for error in _validator(document, "VideoResource").iter_errors(video_resource(job))
    ]
    assert errors == []


def test_a_video_object_without_required_fields_is_refused_by_the_schema(document):
    # The schema check above means something only if a wrong object fails it.
    broken = video_resource(jobs_pb2.Job(id="video_x", create_time=_timestamp(1)))
    del broken["status"]
    broken["seconds"] = 4
    messages = [error.message for error in _validator(document, "VideoResource").iter_errors(broken)]
    assert any("'status' is a required property" in message for message in messages)
    assert any("is not of type 'string'" in message for message in messages)


# --- the decorator and the builder, on a small app ----------------------------------------------------


async def _handler(request: web.Request) -> web.Response:
    return web.json_response({})


def _routes(*pairs: tuple[str, str, Any]) -> list[web.AbstractRoute]:
    app = web.Application()
    for method, route_path, handler in pairs:
        app.router.add_route(method, route_path, handler)
    return list(app.router.routes())


def test_a_new_route_without_documentation_is_reported():
    async def new_thing(request: web.Request) -> web.Response:
        return web.json_response({})

    thing = Schema("Thing", {"type": "object"})
    listed = documented("List things", tags=["Things"], reply=thing, extension=True)(_copy(_handler))
    routes = _routes(("GET", "/v1/things", listed), ("DELETE", "/v1/things/{thing_id}", new_thing))
    assert undocumented_routes(routes) == ["DELETE /v1/things/{thing_id}"]


def test_the_builder_hoists_named_schemas_and_derives_path_parameters():
    thing = Schema("Thing", {"type": "object", "properties": {"parts": {"type": "array", "items": {}}}})
    handler = documented(
        "Get a thing",
        tags=["Things"],
        reply=thing,
        errors=[404],
        extension=True,
        parameters=[path("thing_id", "The thing.")],
    )(_copy(_handler))
    document = openapi_document(
        _routes(("GET", "/v1/things/{thing_id}/parts/{part}", handler)), title="t", version="1"
    )
    validate(document)
    operation = document["paths"]["/v1/things/{thing_id}/parts/{part}"]["get"]
    assert [(parameter["name"], parameter["description"]) for parameter in operation["parameters"]] == [
        ("thing_id", "The thing."),
        ("part", "Part"),
    ]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }
    assert set(operation["responses"]) == {"200", "401", "404", "429", "503", "504"}
    assert document["components"]["schemas"]["Thing"] == thing.body


def test_two_different_schemas_cannot_share_a_name():
    first = documented("A", tags=["T"], reply=Schema("Same", {"type": "object"}))(_copy(_handler))
    second = documented("B", tags=["T"], reply=Schema("Same", {"type": "array"}))(_copy(_handler))
    with pytest.raises(ValueError, match="Same"):
        openapi_document(_routes(("GET", "/a", first), ("GET", "/b", second)), title="t", version="1")


def test_a_documented_path_parameter_the_path_lacks_is_an_error():
    handler = documented("A", tags=["T"], reply={"type": "object"}, parameters=[path("nope", "?")])(
        _copy(_handler)
    )
    with pytest.raises(ValueError, match="nope"):
        openapi_document(_routes(("GET", "/v1/things/{thing_id}", handler)), title="t", version="1")


def test_signed_routes_opt_out_of_api_keys():
    handler = documented("Hook", tags=["T"], reply={"type": "object"}, access=Access.SIGNED)(_copy(_handler))
    document = openapi_document(_routes(("POST", "/hooks", handler)), title="t", version="1")
    operation = document["paths"]["/hooks"]["post"]
    assert operation["security"] == []
    assert "401" not in operation["responses"]


def _copy(handler: Any) -> Any:
    """A distinct function object, so each test's documentation stays its own."""

    async def copied(request: web.Request) -> web.Response:
        return await handler(request)

    return copied
