"""Error kinds to HTTP status codes (Triton's mapping), in one table."""

from __future__ import annotations

from naiad.errors import ErrorCode

# Triton's HttpCodeFromError (server/src/http_server.cc).
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INTERNAL: 500,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUPPORTED: 501,
    ErrorCode.INVALID_ARG: 400,
    ErrorCode.UNKNOWN: 400,
    ErrorCode.ALREADY_EXISTS: 400,
    ErrorCode.CANCELLED: 400,
}


def http_status(code: ErrorCode) -> int:
    return HTTP_STATUS.get(code, 500)
