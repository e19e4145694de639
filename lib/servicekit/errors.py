"""The one error table: domain error kind -> gRPC code -> HTTP status -> OpenAI-style body.

Pure data, no grpc import, so domain code can raise `ServiceError` without knowing transports.
`servicekit.grpcerrors` carries these over gRPC; the gateway renders them as HTTP.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ErrorMapping:
    grpc_code: str  # a grpc.StatusCode member name
    http_status: int
    openai_type: str


class ErrorKind(enum.Enum):
    """Each kind travels as the ErrorInfo reason; table order breaks ties when only a code is known."""

    INVALID_ARGUMENT = ErrorMapping("INVALID_ARGUMENT", 400, "invalid_request_error")
    FAILED_PRECONDITION = ErrorMapping("FAILED_PRECONDITION", 400, "invalid_request_error")
    UNAUTHENTICATED = ErrorMapping("UNAUTHENTICATED", 401, "invalid_request_error")
    PERMISSION_DENIED = ErrorMapping("PERMISSION_DENIED", 403, "permission_error")
    NOT_FOUND = ErrorMapping("NOT_FOUND", 404, "invalid_request_error")
    ALREADY_EXISTS = ErrorMapping("ALREADY_EXISTS", 409, "invalid_request_error")
    ABORTED = ErrorMapping("ABORTED", 409, "invalid_request_error")
    PAYLOAD_TOO_LARGE = ErrorMapping("INVALID_ARGUMENT", 413, "invalid_request_error")
    RATE_LIMITED = ErrorMapping("RESOURCE_EXHAUSTED", 429, "rate_limit_error")
    INSUFFICIENT_QUOTA = ErrorMapping("RESOURCE_EXHAUSTED", 402, "insufficient_quota")
    UNAVAILABLE = ErrorMapping("UNAVAILABLE", 503, "server_error")
    DEADLINE_EXCEEDED = ErrorMapping("DEADLINE_EXCEEDED", 504, "server_error")
    INTERNAL = ErrorMapping("INTERNAL", 500, "server_error")

    @property
    def http_status(self) -> int:
        return self.value.http_status

    @property
    def grpc_code(self) -> str:
        return self.value.grpc_code

    @classmethod
    def from_reason(cls, reason: str) -> ErrorKind | None:
        return cls.__members__.get(reason)

    @classmethod
    def from_grpc_code(cls, grpc_code: str) -> ErrorKind:
        for kind in cls:
            if kind.grpc_code == grpc_code:
                return kind
        return cls.INTERNAL


GENERIC_INTERNAL_MESSAGE = "The server had an error while processing your request."


@dataclass
class ServiceError(Exception):
    """An error a caller may see. `code` is the OpenAI-style machine code, `param` the field at fault."""

    kind: ErrorKind
    message: str
    param: str | None = None
    code: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.kind.name}: {self.message}"


def openai_error_body(error: ServiceError) -> dict[str, Any]:
    """The body OpenAI's API returns for errors, which the `openai` SDK parses."""
    body: dict[str, Any] = {
        "message": error.message,
        "type": error.kind.value.openai_type,
        "param": error.param,
        "code": error.code,
    }
    # Extra facts (for example the credits needed and available) ride along as extra fields.
    for key, value in error.metadata.items():
        body.setdefault(key, _number_or_text(value))
    return {"error": body}


_INTEGER = re.compile(r"-?[0-9]+")


def _number_or_text(value: str) -> int | str:
    # Only plain ASCII integers: str.isdigit() also accepts "²", and lstrip("-") accepted "--5",
    # both of which made int() raise while rendering an error body.
    return int(value) if _INTEGER.fullmatch(value) else value
