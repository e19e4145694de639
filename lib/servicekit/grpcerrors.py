"""Carry `ServiceError` over gRPC as google.rpc.Status with ErrorInfo and BadRequest details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from servicekit.errors import ErrorKind, ServiceError

ERROR_DOMAIN = "vidflow.dev"
_DETAILS_KEY = "grpc-status-details-bin"
# Metadata keys in ErrorInfo that carry the OpenAI-style code and param fields.
_CODE_KEY = "openai_code"


def to_rpc_status(error: ServiceError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(reason=error.kind.name, domain=ERROR_DOMAIN)
    info.metadata.update(error.metadata)
    if error.code:
        info.metadata[_CODE_KEY] = error.code
    details = [_pack(info)]
    if error.param:
        violation = error_details_pb2.BadRequest.FieldViolation(field=error.param, description=error.message)
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    status = status_pb2.Status(
        code=code_pb2.Code.Value(error.kind.grpc_code), message=error.message, details=details
    )
    return rpc_status.to_status(status)


def from_rpc_error(exc: grpc.aio.AioRpcError) -> ServiceError:
    """Rebuild the ServiceError a peer raised; transport failures map by status code."""
    status = _status_from_trailers(exc.trailing_metadata())
    kind = ErrorKind.from_grpc_code(exc.code().name)
    message = exc.details() or ""
    param: str | None = None
    code: str | None = None
    metadata: dict[str, str] = {}
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                kind = ErrorKind.from_reason(info.reason) or kind
                metadata = dict(info.metadata)
                code = metadata.pop(_CODE_KEY, None)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                if bad_request.field_violations:
                    param = bad_request.field_violations[0].field
    return ServiceError(kind, message, param=param, code=code, metadata=metadata)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _status_from_trailers(trailers: grpc.aio.Metadata | None) -> status_pb2.Status | None:
    for key, value in trailers or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None
