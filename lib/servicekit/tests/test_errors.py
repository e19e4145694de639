"""The one error table: kind -> gRPC code -> HTTP status -> OpenAI-style body."""

from __future__ import annotations

import grpc
import pytest

from servicekit.errors import ErrorKind, ServiceError, openai_error_body

# STYLE.md's table, written out independently of errors.py.
EXPECTED_HTTP = {
    ErrorKind.INVALID_ARGUMENT: 400,
    ErrorKind.FAILED_PRECONDITION: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.PERMISSION_DENIED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.ALREADY_EXISTS: 409,
    ErrorKind.ABORTED: 409,
    ErrorKind.PAYLOAD_TOO_LARGE: 413,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.INSUFFICIENT_QUOTA: 402,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.DEADLINE_EXCEEDED: 504,
    ErrorKind.INTERNAL: 500,
}


def test_every_kind_is_in_the_table() -> None:
    assert set(EXPECTED_HTTP) == set(ErrorKind)


@pytest.mark.parametrize("kind", list(ErrorKind), ids=lambda kind: kind.name)
def test_kind_maps_to_the_documented_http_status_and_a_real_grpc_code(kind: ErrorKind) -> None:
    assert kind.http_status == EXPECTED_HTTP[kind]
    assert grpc.StatusCode[kind.grpc_code].name == kind.grpc_code


def test_quota_and_rate_limit_share_a_grpc_code_but_not_an_http_status() -> None:
    assert ErrorKind.INSUFFICIENT_QUOTA.grpc_code == ErrorKind.RATE_LIMITED.grpc_code == "RESOURCE_EXHAUSTED"
    assert (ErrorKind.RATE_LIMITED.http_status, ErrorKind.INSUFFICIENT_QUOTA.http_status) == (429, 402)


@pytest.mark.parametrize(
    ("grpc_code", "kind"),
    [
        ("INVALID_ARGUMENT", ErrorKind.INVALID_ARGUMENT),  # not PAYLOAD_TOO_LARGE: table order wins
        ("RESOURCE_EXHAUSTED", ErrorKind.RATE_LIMITED),  # not INSUFFICIENT_QUOTA
        ("NOT_FOUND", ErrorKind.NOT_FOUND),
        ("UNAVAILABLE", ErrorKind.UNAVAILABLE),
        ("DEADLINE_EXCEEDED", ErrorKind.DEADLINE_EXCEEDED),
        ("UNKNOWN", ErrorKind.INTERNAL),
        ("CANCELLED", ErrorKind.INTERNAL),
        ("UNIMPLEMENTED", ErrorKind.INTERNAL),
        ("DATA_LOSS", ErrorKind.INTERNAL),
        ("not a code", ErrorKind.INTERNAL),
    ],
)
def test_from_grpc_code_picks_the_first_kind_and_falls_back_to_internal(
    grpc_code: str, kind: ErrorKind
) -> None:
    assert ErrorKind.from_grpc_code(grpc_code) is kind


def test_from_reason_accepts_kind_names_only() -> None:
    assert ErrorKind.from_reason("INSUFFICIENT_QUOTA") is ErrorKind.INSUFFICIENT_QUOTA
    assert ErrorKind.from_reason("insufficient_quota") is None
    assert ErrorKind.from_reason("RESOURCE_EXHAUSTED") is None


def test_openai_error_body_has_the_sdk_shape() -> None:
    error = ServiceError(ErrorKind.NOT_FOUND, "No video with id 'v1'.", param="video_id", code="not_found")
    assert openai_error_body(error) == {
        "error": {
            "message": "No video with id 'v1'.",
            "type": "invalid_request_error",
            "param": "video_id",
            "code": "not_found",
        }
    }


def test_openai_error_body_keeps_null_param_and_code() -> None:
    body = openai_error_body(ServiceError(ErrorKind.INTERNAL, "boom"))["error"]
    assert body == {"message": "boom", "type": "server_error", "param": None, "code": None}


def test_openai_error_body_turns_integer_metadata_into_numbers() -> None:
    error = ServiceError(
        ErrorKind.INSUFFICIENT_QUOTA,
        "Not enough credits.",
        code="insufficient_quota",
        metadata={"needed": "80", "available": "0", "delta": "-15", "account": "acct_7", "ratio": "1.5"},
    )
    body = openai_error_body(error)["error"]
    assert body["type"] == "insufficient_quota"
    assert (body["needed"], body["available"], body["delta"]) == (80, 0, -15)
    assert all(type(body[key]) is int for key in ("needed", "available", "delta"))
    assert (body["account"], body["ratio"]) == ("acct_7", "1.5")


@pytest.mark.parametrize("text", ["--5", "-", "", "²", "1_000", " 7"])
def test_openai_error_body_leaves_text_that_is_not_a_plain_integer(text: str) -> None:
    body = openai_error_body(ServiceError(ErrorKind.INVALID_ARGUMENT, "bad", metadata={"value": text}))
    assert body["error"]["value"] == text


def test_metadata_cannot_overwrite_the_standard_fields() -> None:
    error = ServiceError(
        ErrorKind.NOT_FOUND, "real message", metadata={"message": "spoofed", "type": "x", "code": "y"}
    )
    body = openai_error_body(error)["error"]
    assert (body["message"], body["type"], body["code"]) == ("real message", "invalid_request_error", None)


def test_service_error_reads_well() -> None:
    error = ServiceError(ErrorKind.ABORTED, "state changed")
    assert str(error) == "ABORTED: state changed"
    assert error.args == ("state changed",)
