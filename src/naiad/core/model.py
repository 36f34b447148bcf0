"""A loaded model version: its config, instances and scheduler, and how it answers a request."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import ModelInstance, now_ns
from naiad.core.classification import classify, read_labels
from naiad.core.model_io import ModelIO
from naiad.core.scheduling.base import Scheduler
from naiad.core.statistics import (
    BACKEND,
    CANCELED,
    INVALID,
    OTHER,
    REJECTED,
    SUCCESS_OBSERVERS,
    ComputeDurations,
    ModelStatistics,
)
from naiad.core.streaming import StreamItem, decoupled_stream
from naiad.core.validation import validate_request
from naiad.errors import ErrorCode, InternalError, NaiadError, UnavailableError
from naiad.inference import InferenceRequest, InferenceResponse, InferOutput, RequestedOutput
from naiad.observability.trace_context import CURRENT_TRACE
from naiad.tensors import DataType, coerce_output


class ModelState(enum.Enum):
    """Triton's model states, as the repository index reports them."""

    UNKNOWN = "UNKNOWN"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"
    LOADING = "LOADING"
    UNLOADING = "UNLOADING"


# Triton's Status::CodeString, used in load-failure reasons ("Invalid argument: ...").
CODE_STRINGS = {
    ErrorCode.UNKNOWN: "Unknown",
    ErrorCode.INTERNAL: "Internal",
    ErrorCode.NOT_FOUND: "Not found",
    ErrorCode.INVALID_ARG: "Invalid argument",
    ErrorCode.UNAVAILABLE: "Unavailable",
    ErrorCode.UNSUPPORTED: "Unsupported",
    ErrorCode.ALREADY_EXISTS: "Already exists",
    ErrorCode.CANCELLED: "Cancelled",
}


def failure_reason(error: NaiadError) -> str:
    return f"{CODE_STRINGS[error.code]}: {error.message}"


def _request_failure(error: BaseException, stage: str) -> str:
    """The metrics' reason for a request that failed at ``stage`` of :meth:`infer`."""
    code = error.code if isinstance(error, NaiadError) else None
    if isinstance(error, asyncio.CancelledError) or code is ErrorCode.CANCELLED:
        return CANCELED
    if stage == REJECTED:
        # In the scheduler the queue refuses with UNAVAILABLE (full, or timed out) and a
        # bad 'timeout' parameter with INVALID_ARG; anything else came from running the
        # model (the default scheduler passes a backend's exception through).
        if code is ErrorCode.UNAVAILABLE:
            return REJECTED
        return INVALID if code is ErrorCode.INVALID_ARG else BACKEND
    return stage


@dataclass(eq=False)
class ModelVersion:
    """One version of a model; READY versions answer requests."""

    name: str
    version: int
    config: mc.ModelConfig
    model_dir: Path
    state: ModelState = ModelState.LOADING
    reason: str = ""
    scheduler: Scheduler | None = None
    stats: ModelStatistics = field(default_factory=ModelStatistics)
    # Loaded but never scheduled (instance groups with ``passive: true``).
    passive_instances: list[ModelInstance] = field(default_factory=list)
    io: ModelIO = field(init=False)
    labels: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self.io = ModelIO.from_config(self.config)
        self.labels = {
            spec.name: read_labels(self.model_dir / spec.label_filename)
            for spec in self.io.outputs.values()
            if spec.label_filename
        }
        self._all_outputs = [RequestedOutput(name) for name in self.io.outputs]

    def is_ready(self) -> bool:
        """READY and every instance able to serve (an instance may be restarting)."""
        if self.state is not ModelState.READY or self.scheduler is None:
            return False
        return all(instance.is_ready() for instance in self.scheduler.instances)

    @property
    def version_str(self) -> str:
        return str(self.version)

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        start_ns = now_ns()
        trace = CURRENT_TRACE.get()  # set by the frontend for sampled requests only
        if trace is not None:
            trace.begin_model(self.name, self.version, request.id, start_ns, request.inputs)
        self._in_flight += 1
        stage = INVALID  # what a failure from here on means (the metrics' reason)
        times = None
        try:
            batch_size = validate_request(request, self.io, self.name)
            requested: Sequence[RequestedOutput] = (
                request.outputs if request.outputs is not None else self._all_outputs
            )
            if self.scheduler is None:
                stage = OTHER
                raise UnavailableError(f"model '{self.name}' version {self.version} is unloaded")
            stage = REJECTED
            if trace is not None:
                trace.stamp("QUEUE_START")
            completion = await self.scheduler.submit(
                request, batch_size, [output.name for output in requested]
            )
            stage, times = BACKEND, completion.times
            if isinstance(completion.result, NaiadError):
                raise completion.result
            result = completion.result
            response = InferenceResponse(
                model_name=self.name,
                model_version=self.version_str,
                id=request.id,
                outputs=[self._output(output, result) for output in requested],
            )
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and request.cancel_hook is not None:
                request.cancel_hook()  # the client went away: tell the model
            self.stats.record_failure(now_ns() - start_ns, _request_failure(exc, stage))
            if trace is not None:
                trace.end_model(times)
            raise
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()
        request_ns = now_ns() - start_ns
        compute = ComputeDurations.from_times(completion.times)
        self.stats.record_success(max(1, batch_size), request_ns, completion.queue_ns, compute)
        for observer in SUCCESS_OBSERVERS:
            observer(self, max(1, batch_size), request_ns, completion.queue_ns, compute)
        if trace is not None:
            trace.end_model(completion.times, response.outputs)
        return response

    # -- streaming (core/streaming.py) -------------------------------------------------

    @property
    def decoupled(self) -> bool:
        return self.config.model_transaction_policy.decoupled

    async def infer_stream(self, request: InferenceRequest) -> AsyncIterator[StreamItem]:
        """The responses to ``request``: one final for a non-decoupled model, 0..N else.

        Errors before the model runs (validation, unloaded) raise; errors after that
        come as items.
        """
        if not self.decoupled:
            yield StreamItem(await self.infer(request), None, True)
            return
        self._in_flight += 1
        try:
            async for item in decoupled_stream(self, request):
                yield item
        finally:
            self._in_flight -= 1
            if self._in_flight == 0 and self._idle is not None:
                self._idle.set()

    def requested_outputs(self, request: InferenceRequest) -> Sequence[RequestedOutput]:
        return request.outputs if request.outputs is not None else self._all_outputs

    def respond(
        self,
        request: InferenceRequest,
        requested: Sequence[RequestedOutput],
        result: dict[str, np.ndarray],
        partial: bool = False,
    ) -> InferenceResponse:
        """A response from a backend's result; ``partial``: outputs it lacks are left out
        (a decoupled model's responses may each carry some of the outputs)."""
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version_str,
            id=request.id,
            outputs=[
                self._output(output, result)
                for output in requested
                if not partial or output.name in result
            ],
        )

    def record_rejected(self) -> None:
        """Count a request to this version that failed before reaching it (bad wire data)."""
        self.stats.record_failure(0, INVALID)

    def _output(self, requested: RequestedOutput, result: dict[str, np.ndarray]) -> InferOutput:
        spec = self.io.outputs[requested.name]
        array = result.get(requested.name)
        if array is None:
            raise InternalError(f"model '{self.name}' did not produce output '{requested.name}'")
        array = coerce_output(spec.datatype, np.asarray(array))
        if requested.classification > 0:
            array = classify(
                array,
                spec.datatype,
                requested.classification,
                self.io.max_batch_size > 0,
                self.labels.get(spec.name, []),
            )
            return InferOutput(spec.name, DataType.BYTES, tuple(array.shape), array, requested)
        return InferOutput(spec.name, spec.datatype, tuple(array.shape), array, requested)

    async def drain(self) -> None:
        """Wait until no request is running on this version (new ones go elsewhere)."""
        while self._in_flight:
            if self._idle is None:
                self._idle = asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    async def unload(self) -> None:
        """Let in-flight requests finish, then release the instances."""
        self.state = ModelState.UNLOADING
        await self.drain()
        await asyncio.get_running_loop().run_in_executor(None, self.close)
        self.state = ModelState.UNAVAILABLE
        self.reason = "unloaded"

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()
            self.scheduler = None
        for instance in self.passive_instances:
            instance.close()
        self.passive_instances = []
