"""The trace of one sampled request, carried from the frontend through the core.

A frontend that decides to trace a request creates a :class:`RequestTrace` and sets it
in :data:`CURRENT_TRACE` for the task serving the request; the core reads the variable
and stamps its own activities (``REQUEST_START``, ``QUEUE_START``, ``COMPUTE_*``,
``REQUEST_END``). Untraced requests cost the core one ``ContextVar.get``.

This module is a leaf: the core imports it, so it imports nothing from Naiad but
``naiad.backends.base`` types.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, Protocol

import numpy as np

from naiad.backends.base import ExecutionTimes


class TraceTensor(Protocol):
    """What a tensor record needs (``InferInput`` and ``InferOutput`` both fit)."""

    name: str
    shape: tuple[int, ...]
    data: np.ndarray

    @property
    def datatype(self) -> Any: ...


class RequestTrace:
    """Timestamps (monotonic ns, Triton's steady clock) and tensors of one request."""

    __slots__ = (
        "_sink",
        "id",
        "model_name",
        "model_version",
        "otel_context",
        "protocol",
        "request_id",
        "stamps",
        "tensors",
        "timestamps",
        "trace_tensors",
    )

    def __init__(
        self,
        trace_id: int,
        protocol: str,
        sink: Callable[[RequestTrace], None],
        *,
        timestamps: bool = True,
        tensors: bool = False,
        otel_context: object | None = None,
    ) -> None:
        self.id = trace_id
        self.protocol = protocol  # "HTTP" or "GRPC"
        self.model_name = ""
        self.model_version = -1
        self.request_id = ""
        self.stamps: list[tuple[str, int]] = []
        self.tensors: list[dict[str, Any]] = []
        self.timestamps = timestamps
        self.trace_tensors = tensors
        # The W3C trace context the client sent (OpenTelemetry mode), if any.
        self.otel_context = otel_context
        self._sink = sink

    def stamp(self, name: str, ns: int | None = None) -> None:
        self.stamps.append((name, time.monotonic_ns() if ns is None else ns))

    # -- what the core calls ----------------------------------------------------

    def begin_model(
        self, name: str, version: int, request_id: str, start_ns: int, inputs: Iterable[Any]
    ) -> None:
        self.model_name = name
        self.model_version = version
        self.request_id = request_id
        self.stamp("REQUEST_START", start_ns)
        if self.trace_tensors:
            for tensor in inputs:
                self._tensor("TENSOR_QUEUE_INPUT", tensor)

    def end_model(self, times: ExecutionTimes | None, outputs: Iterable[Any] = ()) -> None:
        if times is not None and times.compute_start_ns:
            self.stamp("COMPUTE_START", times.compute_start_ns)
            self.stamp("COMPUTE_INPUT_END", times.compute_input_end_ns)
            self.stamp("COMPUTE_OUTPUT_START", times.compute_output_start_ns)
            self.stamp("COMPUTE_END", times.compute_end_ns)
        if self.trace_tensors:
            for tensor in outputs:
                self._tensor("TENSOR_BACKEND_OUTPUT", tensor)
        self.stamp("REQUEST_END")

    def finish(self) -> None:
        """The frontend sent the response: hand the trace to its writer or exporter."""
        self._sink(self)

    # -- records ----------------------------------------------------------------

    def _tensor(self, activity: str, tensor: TraceTensor) -> None:
        data = np.asarray(tensor.data).reshape(-1)
        if data.dtype == object:
            values = [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in data
            ]
        else:
            values = [str(v) for v in data.tolist()]
        datatype = getattr(tensor.datatype, "value", tensor.datatype)
        self.tensors.append(
            {
                "id": self.id,
                "activity": activity,
                "tensor": {
                    "name": tensor.name,
                    "data": ",".join(values),
                    "shape": ",".join(str(d) for d in tensor.shape),
                    "dtype": str(datatype),
                },
            }
        )

    def ordered_stamps(self) -> list[tuple[str, int]]:
        """Timestamps in time order (compute stamps are added after the queue stamp)."""
        return sorted(self.stamps, key=lambda stamp: stamp[1])

    def record(self) -> dict[str, Any]:
        """The trace as one object of Triton's trace file (model, ids and timestamps)."""
        record: dict[str, Any] = {
            "id": self.id,
            "model_name": self.model_name,
            "model_version": self.model_version,
        }
        if self.request_id:
            record["request_id"] = self.request_id
        if self.timestamps:
            record["timestamps"] = [{"name": n, "ns": ns} for n, ns in self.ordered_stamps()]
        return record


# The trace of the request the current task serves; None when it is not traced.
CURRENT_TRACE: ContextVar[RequestTrace | None] = ContextVar("naiad_request_trace", default=None)
