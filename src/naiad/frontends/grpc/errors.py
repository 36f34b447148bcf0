"""How the gRPC frontend reports failures: one ErrorCode -> grpc.StatusCode table.

Every RPC handler runs inside :func:`reporting_errors`, so a :class:`NaiadError` becomes
a gRPC status with the error's message as details (what ``tritonclient`` shows), and
any other exception becomes INTERNAL instead of a dropped call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from naiad.errors import ErrorCode, NaiadError

logger = logging.getLogger("naiad.frontends.grpc")

# Triton's GrpcStatusUtil::CodeToStatus.
STATUS_BY_CODE: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.UNKNOWN: grpc.StatusCode.UNKNOWN,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.INVALID_ARG: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNSUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
}

_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[Any]])


def status_code(error: NaiadError) -> grpc.StatusCode:
    return STATUS_BY_CODE[error.code]


async def abort_with(context: grpc.aio.ServicerContext, error: NaiadError) -> NoReturn:
    await context.abort(status_code(error), error.message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def reporting_errors(handler: _Handler) -> _Handler:
    """Wrap a unary servicer method so every failure ends as a clean gRPC status."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            # The handler already aborted with its own status: let grpc finish the call.
            raise
        except NaiadError as exc:
            await abort_with(context, exc)
        except Exception as exc:
            # A bug, not a client error: keep the traceback in the log, the server alive,
            # and tell the client what failed without leaking internals beyond the text.
            logger.exception("unexpected error in gRPC %s", handler.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"internal error in {handler.__name__}: {type(exc).__name__}: {exc}",
            )

    return wrapper  # type: ignore[return-value]
