"""OpenAPI 3.1 from the code. Each handler carries its documentation (`@documented`), the route
table supplies paths and methods, and `openapi_document` puts the two together, so a route
cannot drift from its description and a new route without one fails
`services/gateway/tests/test_api_docs.py`.

Documenting a route is a decorator beside the route's own:

    @routes.get("/v1/things/{thing_id}")
    @documented("Retrieve a thing", tags=["Things"], reply=THING, errors=[404], extension=True)
    async def retrieve_thing(request: web.Request) -> web.Response: ...

where `THING = Schema("Thing", {...JSON Schema...})` is defined once (named schemas land in
`components/schemas` and are referenced by `$ref`). Path parameters come from the route's path;
401, 429, 503 and 504 are added to every authenticated route, 403 to admin routes, and 400, 408 and 413
to every route with a body. `links=links_to([...], "thing_id")` on the route that makes a thing
says which operations take its id from the answer (OpenAPI links, which clients and Schemathesis's
stateful tests follow); a link to an operation or parameter that does not exist fails the build.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import hdrs, web

OPENAPI_VERSION = "3.1.0"
EXTENSION_TAG = "Vidflow extensions"
# Routes that are not part of the API: probes, the documentation itself, and the web app (webapp_routes).
NOT_API_PATHS = frozenset(
    {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/init.js", "/", "/app/{name}"}
)
_DOC_ATTRIBUTE = "__vidflow_api_doc__"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


@dataclass(frozen=True)
class Schema:
    """A named JSON Schema (2020-12): written once under components/schemas, referenced by $ref.
    `body` may hold other Schema objects anywhere; they are hoisted the same way."""

    name: str
    body: Mapping[str, Any]

    def nullable(self) -> dict[str, Any]:
        return {"anyOf": [self, {"type": "null"}]}


class Access(enum.Enum):
    USER = "user"  # an API key or a JWT; everything is scoped to the caller
    ADMIN = "admin"  # an admin's API key or JWT; anyone else gets 403
    SIGNED = "signed"  # no key: the body is signed (provider webhooks)


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # "query", "header" or "path"
    schema: Any
    description: str
    required: bool = False
    extension: bool = False


def query(name: str, schema: Any, description: str, *, extension: bool = False) -> Parameter:
    return Parameter(name, "query", schema, description, extension=extension)


def header(
    name: str, schema: Any, description: str, *, required: bool = False, extension: bool = False
) -> Parameter:
    return Parameter(name, "header", schema, description, required=required, extension=extension)


def path(name: str, description: str, schema: Any = None) -> Parameter:
    """Describes a path parameter; without one, a path parameter is a plain string."""
    return Parameter(name, "path", schema or {"type": "string"}, description, required=True)


@dataclass(frozen=True)
class Body:
    """A request body: media type -> schema. `example` is a valid body, used by generic tests."""

    media: Mapping[str, Any]
    example: Mapping[str, Any] | None = None
    required: bool = True


def json_body(schema: Any, *, example: Mapping[str, Any] | None = None) -> Body:
    return Body({"application/json": schema}, example=example)


@dataclass(frozen=True)
class ResponseHeader:
    name: str
    schema: Any
    description: str
    required: bool = False


@dataclass(frozen=True)
class Reply:
    """A success response: media type -> schema (an empty mapping for no body)."""

    media: Mapping[str, Any]
    status: int = 200
    description: str = "OK"
    headers: Sequence[ResponseHeader] = ()


def json_reply(
    schema: Any, *, status: int = 200, description: str = "OK", headers: Sequence[ResponseHeader] = ()
) -> Reply:
    return Reply({"application/json": schema}, status=status, description=description, headers=headers)


@dataclass(frozen=True)
class Link:
    """An OpenAPI link from an operation's success answer: each of the target operation's
    `parameters` (by name) is filled from the answer by a runtime expression, such as
    `$response.body#/id`."""

    operation_id: str
    parameters: Mapping[str, str]
    description: str = ""


def links_to(
    operation_ids: Iterable[str], parameter: str, expression: str = "$response.body#/id"
) -> dict[str, Link]:
    """Links that put the same value of the answer (by default its `id`) into `parameter` of each
    operation, named after the operations (`retrieve_video` -> `RetrieveVideo`)."""
    return {
        "".join(word.capitalize() for word in operation_id.split("_")): Link(
            operation_id, {parameter: expression}
        )
        for operation_id in operation_ids
    }


@dataclass(frozen=True)
class Operation:
    summary: str
    tags: Sequence[str]
    replies: Sequence[Reply]
    description: str = ""
    errors: Sequence[int] = ()
    parameters: Sequence[Parameter] = ()
    body: Body | None = None
    extension: bool = False
    access: Access = Access.USER
    extra: Mapping[str, Any] = field(default_factory=dict)
    links: Mapping[str, Link] = field(default_factory=dict)


def documented(
    summary: str,
    *,
    tags: Sequence[str],
    reply: Reply | Schema | Mapping[str, Any] | Sequence[Reply],
    description: str = "",
    errors: Iterable[int] = (),
    parameters: Sequence[Parameter] = (),
    body: Body | None = None,
    extension: bool = False,
    access: Access = Access.USER,
    extra: Mapping[str, Any] | None = None,
    links: Mapping[str, Link] | None = None,
) -> Callable[[HandlerT], HandlerT]:
    """Attach an OpenAPI operation to a handler. `reply` is the 200 JSON schema, or Reply objects
    for other statuses and media types; `errors` the statuses the route itself can answer with an
    OpenAI error body (besides the ones every route of its kind gets); `extension` marks a route
    OpenAI's API does not have. `extra` adds `x-` keys to the operation; `links` go on the first
    reply."""
    if isinstance(reply, Reply):
        replies: Sequence[Reply] = (reply,)
    elif isinstance(reply, Schema | Mapping):
        replies = (json_reply(reply),)
    else:
        replies = tuple(reply)
    operation = Operation(
        summary=summary,
        tags=tuple(tags),
        replies=replies,
        description=description,
        errors=tuple(errors),
        parameters=tuple(parameters),
        body=body,
        extension=extension,
        access=access,
        extra=dict(extra or {}),
        links=dict(links or {}),
    )

    def attach(handler: HandlerT) -> HandlerT:
        setattr(handler, _DOC_ATTRIBUTE, operation)
        return handler

    return attach


def operation_of(handler: Any) -> Operation | None:
    found = getattr(handler, _DOC_ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None


# --- the error side, shared by every operation ---------------------------------------------------

ERROR = Schema(
    "Error",
    {
        "type": "object",
        "title": "Error response",
        "description": "Every error, in OpenAI's shape. Extra facts may ride along inside `error` "
        "(a 402 carries the credits `needed` and `available`).",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string", "description": "What went wrong, for people."},
                    "type": {
                        "type": "string",
                        "description": "The OpenAI error type, e.g. `invalid_request_error`.",
                        "examples": ["invalid_request_error"],
                    },
                    "param": {
                        "type": ["string", "null"],
                        "description": "The field, parameter or header at fault, if one is.",
                    },
                    "code": {
                        "type": ["string", "null"],
                        "description": "A machine-readable code, e.g. `invalid_value`, `video_not_found`.",
                    },
                },
            }
        },
    },
)
REQUEST_ID_HEADER = ResponseHeader(
    "X-Request-Id",
    {"type": "string"},
    "The request's id (yours if you sent one), for support and logs.",
    required=True,
)
# Status -> (components/responses name, description).
ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is invalid; `param` names the field, parameter or header."),
    401: ("Unauthorized", "No API key or token, or one that is wrong, revoked or expired."),
    402: (
        "PaymentRequired",
        "`insufficient_quota`: not enough credits; `budget_exceeded`: over the key's budget.",
    ),
    403: ("Forbidden", "The caller may not use this route (e.g. it needs an admin)."),
    404: ("NotFound", "No such resource for this caller; another user's ids answer the same way."),
    408: ("RequestTimeout", "The request body stopped arriving, or took too long; the connection is closed."),
    409: ("Conflict", "The resource changed meanwhile; retry."),
    413: ("PayloadTooLarge", "The request body is too large."),
    429: (
        "TooManyRequests",
        "`rate_limit_exceeded`: over the key's requests per minute (see `Retry-After`), or over its "
        "limit of unfinished videos.",
    ),
    503: ("Unavailable", "A backing service is unavailable; retry shortly."),
    504: ("GatewayTimeout", "A backing service did not answer in time (it may be hung); retry shortly."),
}
# Every keyed route can meet a bad key, the key's rate limit, or a backing service that is down or
# hung (its call then runs out of time).
_ERRORS_BY_ACCESS = {
    Access.USER: (401, 429, 503, 504),
    Access.ADMIN: (401, 403, 429, 503, 504),
    Access.SIGNED: (),
}
_ERRORS_WITH_A_BODY = (400, 408, 413)


# --- the document --------------------------------------------------------------------------------


def api_routes(routes: Iterable[web.AbstractRoute]) -> Iterator[web.AbstractRoute]:
    """The routes that make up the API: not static files, probes or the docs, and not the HEAD
    twin aiohttp adds to every GET."""
    for route in routes:
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource):
            continue
        if resource.canonical in NOT_API_PATHS or route.method == hdrs.METH_HEAD:
            continue
        yield route


def undocumented_routes(routes: Iterable[web.AbstractRoute]) -> list[str]:
    return [
        f"{route.method} {route.resource.canonical}"
        for route in api_routes(routes)
        if route.resource is not None and operation_of(route.handler) is None
    ]


def openapi_document(
    routes: Iterable[web.AbstractRoute], *, title: str, version: str, description: str = ""
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the documented routes, as plain JSON-ready data."""
    paths: dict[str, dict[str, Any]] = {}
    for route in api_routes(routes):
        operation = operation_of(route.handler)
        if operation is None or route.resource is None:
            continue
        route_path = route.resource.canonical
        paths.setdefault(route_path, {})[route.method.lower()] = _operation_object(
            operation, route_path, getattr(route.handler, "__name__", "")
        )
    _check_links(paths)
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/", "description": "This gateway"}],
        "security": [{"ApiKeyAuth": []}, {"JwtAuth": []}],
        "tags": _tags(paths),
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKeyAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`vf_...`) as `Authorization: Bearer <key>`.",
                },
                "JwtAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT from the configured issuer, in the same header.",
                },
            },
            "responses": {
                name: {
                    "description": text,
                    "headers": {REQUEST_ID_HEADER.name: _header_object(REQUEST_ID_HEADER)},
                    "content": {"application/json": {"schema": ERROR}},
                }
                for name, text in ERROR_RESPONSES.values()
            },
        },
    }
    schemas: dict[str, Any] = {}
    hoisted = _hoist(document, schemas)
    hoisted["components"]["schemas"] = dict(sorted(schemas.items()))
    return hoisted


def _check_links(paths: Mapping[str, Mapping[str, Any]]) -> None:
    """Every link names an operation in the document and only parameters that operation has."""
    parameters_of = {
        operation["operationId"]: {parameter["name"] for parameter in operation.get("parameters", [])}
        for item in paths.values()
        for operation in item.values()
    }
    for item in paths.values():
        for operation in item.values():
            for response in operation["responses"].values():
                for name, link in response.get("links", {}).items():
                    target = link["operationId"]
                    where = f"{operation['operationId']}: link {name}"
                    if target not in parameters_of:
                        raise ValueError(f"{where} names no documented operation ({target})")
                    unknown = set(link["parameters"]) - parameters_of[target]
                    if unknown:
                        raise ValueError(f"{where}: {target} has no parameters {sorted(unknown)}")


def _operation_object(operation: Operation, route_path: str, handler_name: str) -> dict[str, Any]:
    declared = {(parameter.location, parameter.name): parameter for parameter in operation.parameters}
    parameters = [
        declared.pop(("path", name), path(name, name.replace("_", " ").capitalize()))
        for name in _PATH_PARAMETER.findall(route_path)
    ]
    stray = [name for location, name in declared if location == "path"]
    if stray:
        raise ValueError(f"{handler_name}: documents path parameters {stray} that {route_path} lacks")
    parameters.extend(declared.values())
    result: dict[str, Any] = {
        "operationId": handler_name,
        "summary": operation.summary,
        "tags": [*operation.tags, *([EXTENSION_TAG] if operation.extension else [])],
    }
    if operation.description:
        result["description"] = operation.description
    if parameters:
        result["parameters"] = [_parameter_object(parameter) for parameter in parameters]
    if operation.body is not None:
        result["requestBody"] = {
            "required": operation.body.required,
            "content": {
                media: _media_object(schema, operation.body.example)
                for media, schema in operation.body.media.items()
            },
        }
    result["responses"] = _responses(operation)
    if operation.access is Access.SIGNED:
        result["security"] = []
    if operation.access is Access.ADMIN:
        result["x-vidflow-admin-only"] = True
    if operation.extension:
        result["x-vidflow-extension"] = True
    result.update(operation.extra)
    return result


def _responses(operation: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for number, reply in enumerate(operation.replies):
        headers = [REQUEST_ID_HEADER, *reply.headers]
        response: dict[str, Any] = {
            "description": reply.description,
            "headers": {item.name: _header_object(item) for item in headers},
        }
        if reply.media:
            response["content"] = {media: {"schema": schema} for media, schema in reply.media.items()}
        if number == 0 and operation.links:
            response["links"] = {name: _link_object(link) for name, link in operation.links.items()}
        responses[str(reply.status)] = response
    statuses = set(operation.errors) | set(_ERRORS_BY_ACCESS[operation.access])
    if operation.body is not None:
        statuses |= set(_ERRORS_WITH_A_BODY)
    for status in sorted(statuses):
        if status not in ERROR_RESPONSES:
            raise ValueError(f"no shared description of error status {status}; add it to ERROR_RESPONSES")
        responses[str(status)] = {"$ref": f"#/components/responses/{ERROR_RESPONSES[status][0]}"}
    return responses


def _parameter_object(parameter: Parameter) -> dict[str, Any]:
    result: dict[str, Any] = {
        "name": parameter.name,
        "in": parameter.location,
        "required": parameter.required,
        "description": parameter.description,
        "schema": parameter.schema,
    }
    if parameter.extension:
        result["x-vidflow-extension"] = True
    return result


def _link_object(link: Link) -> dict[str, Any]:
    result: dict[str, Any] = {"operationId": link.operation_id, "parameters": dict(link.parameters)}
    if link.description:
        result["description"] = link.description
    return result


def _header_object(item: ResponseHeader) -> dict[str, Any]:
    return {"description": item.description, "required": item.required, "schema": item.schema}


def _media_object(schema: Any, example: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"schema": schema} if example is None else {"schema": schema, "example": dict(example)}


def _tags(paths: Mapping[str, Mapping[str, Any]]) -> list[dict[str, str]]:
    names = {
        tag for operations in paths.values() for operation in operations.values() for tag in operation["tags"]
    }
    tags = [{"name": name} for name in sorted(names - {EXTENSION_TAG})]
    if EXTENSION_TAG in names:
        tags.append({"name": EXTENSION_TAG, "description": "Routes OpenAI's Videos API does not have."})
    return tags


def _hoist(value: Any, schemas: dict[str, Any]) -> Any:
    """A copy of `value` with every Schema replaced by a $ref and its body put in `schemas`."""
    if isinstance(value, Schema):
        if value.name not in schemas:
            schemas[value.name] = None  # claimed first, so a schema may refer to itself
            schemas[value.name] = _hoist(value.body, schemas)
        elif schemas[value.name] is not None and schemas[value.name] != _hoist(value.body, {}):
            raise ValueError(f"two different schemas are both named {value.name!r}")
        return {"$ref": f"#/components/schemas/{value.name}"}
    if isinstance(value, Mapping):
        return {key: _hoist(item, schemas) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_hoist(item, schemas) for item in value]
    return value
