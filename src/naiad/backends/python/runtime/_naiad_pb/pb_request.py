"""``pb_utils.InferenceRequest``, ``InferenceResponse`` and the response sender.

Requests the model receives are built by the worker from the wire; requests a model
builds itself run on other models of the server with ``exec`` / ``async_exec`` (BLS,
see ``bls``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from . import context
from .errors import TritonError, TritonModelException
from .pb_tensor import Tensor

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_GPU = 0
TRITONSERVER_MEMORY_CPU = 1

_NOT_YET = "is not supported by this server yet"


def parameters_to_json(parameters: Any) -> str:
    """Triton's checks: a dict of str keys and bool/int/str values, as JSON text."""
    if parameters is None:
        return "{}"
    if not isinstance(parameters, dict):
        raise TritonModelException(f"Expect dict, got {type(parameters)}")
    for key, value in parameters.items():
        if not isinstance(key, str):
            raise TritonModelException(
                f"Expect parameters keys to have type str, found type {type(key)}"
            )
        if not isinstance(value, bool | int | str):
            raise TritonModelException(
                f"Expect parameters values to have type bool/int/str, found type {type(value)}"
            )
    return json.dumps(parameters)


class PreferredMemory:
    def __init__(self, preferred_memory_type: int, preferred_device_id: int = 0) -> None:
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = preferred_device_id


class InferenceTrace:
    """Tracing context of a request; tracing is not available yet, so there is none."""

    def get_context(self) -> str | None:
        return None


class InferenceResponse:
    """``InferenceResponse(output_tensors=[], error=None, parameters=None)``."""

    __slots__ = ("_error", "_output_tensors", "_parameters")

    def __init__(
        self,
        output_tensors: list[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: dict[str, bool | int | str] | None = None,
    ) -> None:
        tensors = [] if output_tensors is None else list(output_tensors)
        for tensor in tensors:
            if not isinstance(tensor, Tensor):
                raise TypeError(
                    f"output_tensors must hold pb_utils.Tensor objects, found {type(tensor)}"
                )
        if error is not None and not isinstance(error, TritonError):
            raise TypeError(f"error must be a pb_utils.TritonError, found {type(error)}")
        self._output_tensors = tensors
        self._error = error
        self._parameters = "{}" if parameters is None else parameters_to_json(parameters)

    def output_tensors(self) -> list[Tensor]:
        return self._output_tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        return self._parameters


class InferenceResponseSender:
    """Sends the responses of one request.

    Non-decoupled models may answer through the sender instead of returning the
    response (then ``execute`` returns None for that request). Decoupled models send
    0..N responses from any thread, before or after ``execute`` returns, and close the
    stream with ``TRITONSERVER_RESPONSE_COMPLETE_FINAL`` (a flag-only send is allowed);
    each send goes to the server at once through ``stream``.
    """

    def __init__(
        self, stream: Callable[[InferenceResponse | None, bool], None] | None = None
    ) -> None:
        self.response: InferenceResponse | None = None
        self.closed = False
        self.execute_returned = False
        self._cancelled = False
        self._stream = stream
        # Senders of decoupled models are used from the model's own threads.
        self._lock = threading.Lock()

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if response is not None and not isinstance(response, InferenceResponse):
            raise TypeError(f"expected an InferenceResponse, found {type(response)}")
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if self._stream is not None:
            with self._lock:
                if self.closed:
                    raise TritonModelException(
                        "Unable to send response. Response sender has been closed."
                    )
                if response is None and not final:
                    raise TritonModelException(
                        "Response cannot be None if the flag is not "
                        "TRITONSERVER_RESPONSE_COMPLETE_FINAL"
                    )
                self.closed = final
                self._stream(response, final)
            return
        if self.closed:
            raise TritonModelException("Unable to send response. Response sender has been closed.")
        if self.execute_returned:
            raise TritonModelException(
                "a non-decoupled model cannot send a response after execute returned"
            )
        if response is not None:
            if self.response is not None:
                raise TritonModelException("Non-decoupled model cannot send more than one response")
            self.response = response
        if final:
            self.closed = True

    def is_cancelled(self) -> bool:
        if not self._cancelled and context.poll_cancel is not None:
            context.poll_cancel()
        return self._cancelled


class InferenceRequest:
    """A request: the ones ``execute`` receives, or one a model builds for BLS."""

    def __init__(
        self,
        request_id: str = "",
        correlation_id: int | str = 0,
        inputs: list[Tensor] | None = None,
        requested_output_names: list[str] | None = None,
        model_name: str = "",
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: PreferredMemory | None = None,
        trace: InferenceTrace | None = None,
        parameters: dict[str, bool | int | str] | None = None,
    ) -> None:
        if inputs is None or requested_output_names is None or not model_name:
            raise TypeError(
                "InferenceRequest needs 'inputs', 'requested_output_names' and 'model_name'"
            )
        if not isinstance(correlation_id, int | str):
            raise TritonModelException("Correlation ID must be integer or string")
        self._id = request_id
        self._correlation_id = correlation_id
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self._model_name = model_name
        self._model_version = model_version
        self._flags = flags
        self._timeout = timeout
        self._parameters = parameters_to_json(parameters)
        self._trace = trace or InferenceTrace()
        self._sender: InferenceResponseSender | None = None
        self._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        self._cancelled = False

    @classmethod
    def _incoming(
        cls,
        request_id: str,
        inputs: list[Tensor],
        requested: list[str],
        parameters: str,
        correlation_id: int | str,
        flags: int,
        timeout: int,
        model_name: str,
    ) -> InferenceRequest:
        """A request as ``execute`` receives it (built by the worker, already checked)."""
        request = cls.__new__(cls)
        request._id = request_id
        request._correlation_id = correlation_id
        request._inputs = inputs
        request._requested = requested
        request._model_name = model_name
        request._model_version = -1
        request._flags = flags
        request._timeout = timeout
        request._parameters = parameters
        request._trace = InferenceTrace()
        request._sender = None
        request._release_flags = TRITONSERVER_REQUEST_RELEASE_ALL
        request._cancelled = False
        return request

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def set_flags(self, flags: int) -> None:
        self._flags = flags

    def timeout(self) -> int:
        return self._timeout

    def parameters(self) -> str:
        return self._parameters

    def trace(self) -> InferenceTrace:
        return self._trace

    def requested_output_names(self) -> list[str]:
        return self._requested

    def get_response_sender(self) -> InferenceResponseSender:
        if self._sender is None:
            self._sender = InferenceResponseSender()
            self._sender._cancelled = self._cancelled
        return self._sender

    def is_cancelled(self) -> bool:
        """True once the client cancelled the request (gRPC cancel, HTTP disconnect)."""
        if not self._cancelled and context.poll_cancel is not None:
            context.poll_cancel()
        return self._cancelled

    def _cancel(self) -> None:
        self._cancelled = True
        if self._sender is not None:
            self._sender._cancelled = True

    def set_release_flags(self, flags: int) -> None:
        if flags & TRITONSERVER_REQUEST_RELEASE_RESCHEDULE:
            raise TritonModelException(f"request rescheduling {_NOT_YET}")
        self._release_flags = flags

    def exec(self, decoupled: bool = False) -> Any:
        """Run this request on ``model_name`` (BLS, blocking): its response, or with
        ``decoupled=True`` an iterator of responses. Model errors come back as
        ``response.error()``, as in Triton."""
        from . import bls

        return bls.execute(self, decoupled)

    async def async_exec(self, decoupled: bool = False) -> Any:
        """``exec`` for ``async def execute``: awaitable, other requests run meanwhile."""
        from . import bls

        return await bls.execute_async(self, decoupled)
