"""TF Serving's error contract: a canonical code, a message, and for REST the
HTTP status TF Serving maps the code to (model_servers/http_server.cc) and a
`{"error": message}` body."""

from __future__ import annotations

import grpc

HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request the server could not serve, with TF Serving's error code."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int = 0):
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        return self._http_status or HTTP_STATUS.get(self.code, 500)

    @property
    def code_name(self) -> str:
        return self.code.name


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def already_exists(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.ALREADY_EXISTS, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def too_large(message: str) -> ServingError:
    """A request over a size limit: RESOURCE_EXHAUSTED over gRPC, as gRPC's own message limit; 413
    over REST, as an oversized body (429, the code's usual mapping, would tell a client to retry)."""
    return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message, http_status=413)
