"""The one error hierarchy of Naiad.

Every failure the server reports is a :class:`NaiadError` of one semantic kind.
Kinds mirror Triton's ``TRITONSERVER_Error_Code``; only the frontends turn a
kind into an HTTP status or a gRPC status code (each in one table).
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Triton's error codes (``TRITONSERVER_ERROR_*``)."""

    UNKNOWN = "UNKNOWN"
    INTERNAL = "INTERNAL"
    NOT_FOUND = "NOT_FOUND"
    INVALID_ARG = "INVALID_ARG"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CANCELLED = "CANCELLED"


class NaiadError(Exception):
    """Root of every error Naiad raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UnknownError(NaiadError):
    code = ErrorCode.UNKNOWN


class InternalError(NaiadError):
    code = ErrorCode.INTERNAL


class NotFoundError(NaiadError):
    code = ErrorCode.NOT_FOUND


class InvalidArgumentError(NaiadError):
    code = ErrorCode.INVALID_ARG


class UnavailableError(NaiadError):
    code = ErrorCode.UNAVAILABLE


class UnsupportedError(NaiadError):
    code = ErrorCode.UNSUPPORTED


class AlreadyExistsError(NaiadError):
    code = ErrorCode.ALREADY_EXISTS


class CancelledError(NaiadError):
    code = ErrorCode.CANCELLED


class ModelConfigError(InvalidArgumentError):
    """A model's configuration is invalid; the message names the file and the field."""


class ModelLoadError(NaiadError):
    """A model could not be loaded; ``reason`` is what the repository index reports."""

    code = ErrorCode.INTERNAL


_BY_CODE: dict[ErrorCode, type[NaiadError]] = {
    ErrorCode.UNKNOWN: UnknownError,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.INVALID_ARG: InvalidArgumentError,
    ErrorCode.UNAVAILABLE: UnavailableError,
    ErrorCode.UNSUPPORTED: UnsupportedError,
    ErrorCode.ALREADY_EXISTS: AlreadyExistsError,
    ErrorCode.CANCELLED: CancelledError,
}


def error_for_code(code: ErrorCode, message: str) -> NaiadError:
    """Build the error class that matches ``code`` (used when errors cross a boundary)."""
    return _BY_CODE[code](message)
