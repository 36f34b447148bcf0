"""``pb_utils.TritonError`` (an error value for one response) and ``TritonModelException``."""

from __future__ import annotations

from typing import ClassVar

# TRITONSERVER_Error_Code numbers and their names (the names cross the wire).
CODE_NAMES = (
    "UNKNOWN",
    "INTERNAL",
    "NOT_FOUND",
    "INVALID_ARG",
    "UNAVAILABLE",
    "UNSUPPORTED",
    "ALREADY_EXISTS",
    "CANCELLED",
)


class TritonError:
    """An error value (not an exception): ``TritonError(message, code=TritonError.INTERNAL)``."""

    UNKNOWN: ClassVar[int] = 0
    INTERNAL: ClassVar[int] = 1
    NOT_FOUND: ClassVar[int] = 2
    INVALID_ARG: ClassVar[int] = 3
    UNAVAILABLE: ClassVar[int] = 4
    UNSUPPORTED: ClassVar[int] = 5
    ALREADY_EXISTS: ClassVar[int] = 6
    CANCELLED: ClassVar[int] = 7

    __slots__ = ("_code", "_message")

    def __init__(self, message: str, code: int = 1) -> None:
        if message is None:
            raise TypeError("TritonError message must not be None")
        if code not in range(len(CODE_NAMES)):
            raise ValueError(f"unknown TritonError code {code}")
        self._message = str(message)
        self._code = int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def code_name(self) -> str:
        return CODE_NAMES[self._code]

    def __str__(self) -> str:
        return self._message

    def __repr__(self) -> str:
        return f"TritonError({self._message!r}, code={CODE_NAMES[self._code]})"


class TritonModelException(Exception):
    """Raised by the python backend API (and by models) for errors in a model."""

    def message(self) -> str:
        return str(self.args[0]) if self.args else ""
