"""Run an ensemble's steps: the scheduler of models with ``platform: "ensemble"``.

An ensemble has no backend and no instances. Its "execution" sends one request per
step to the step model through the core (:meth:`ModelVersion.infer`), so each step is
validated, queued by its own scheduler (its dynamic batcher, say) and counted in its
own statistics, exactly as a request from a client would be. Steps start as soon as
every tensor they consume exists, each in its own task, so independent branches run
at the same time. Step models are looked up at request time, so a step that is
reloaded is picked up without reloading the ensemble.

An error from any step fails the request, its message prefixed with the ensemble and
the step (Triton's ``in ensemble '<name>', `` plus the step model); the other steps
still running are cancelled. A cancelled request cancels its steps with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import ExecutionTimes, now_ns
from naiad.config.ensemble import EnsembleStep
from naiad.core.scheduling.base import Completion, Scheduler
from naiad.core.statistics import ComputeDurations, ModelStatistics
from naiad.errors import InternalError, NaiadError, UnsupportedError
from naiad.inference import InferenceRequest, InferInput, RequestedOutput

if TYPE_CHECKING:
    from naiad.core.model import ModelVersion

# Finds the version of a step model that serves a request: (name, version or "") -> model.
StepResolver = Callable[[str, str], "ModelVersion"]


def _prefixed(error: NaiadError, ensemble: str, step: EnsembleStep) -> NaiadError:
    """The same kind of error, its message naming the ensemble and the failing step."""
    copy = type(error)(f"in ensemble '{ensemble}', step '{step.model_name}': {error.message}")
    copy.code = error.code  # keeps the code of errors whose class carries several
    return copy


class EnsembleScheduler(Scheduler):
    def __init__(
        self,
        config: mc.ModelConfig,
        steps: Sequence[EnsembleStep],
        resolve: StepResolver,
        stats: ModelStatistics,
    ) -> None:
        super().__init__([])
        self._name = config.name
        self._steps = list(steps)
        self._resolve = resolve
        self._stats = stats
        # ensemble_scheduling.max_inflight_requests: requests running through the
        # pipeline at once (0: no limit); the others wait here, in arrival order.
        limit = config.ensemble_scheduling.max_inflight_requests
        self._inflight = asyncio.Semaphore(limit) if limit > 0 else None
        self._waiting = 0

    def pending_count(self) -> int:
        return self._waiting

    async def submit(
        self, request: InferenceRequest, batch_size: int, output_names: Sequence[str]
    ) -> Completion:
        queued_ns = now_ns()
        if self._inflight is not None:
            self._waiting += 1
            try:
                await self._inflight.acquire()
            finally:
                self._waiting -= 1
        try:
            start_ns = now_ns()
            result: dict[str, InferInput] | NaiadError
            try:
                result = await self._run(request)
            except NaiadError as exc:
                result = exc
            end_ns = now_ns()
        finally:
            if self._inflight is not None:
                self._inflight.release()
        # The whole pipeline counts as the ensemble's "inference"; the steps' own
        # queue and compute times are in their own statistics.
        times = ExecutionTimes(start_ns, start_ns, end_ns, end_ns)
        self._stats.record_execution(max(1, batch_size), ComputeDurations.from_times(times))
        if isinstance(result, NaiadError):
            return Completion(result, start_ns - queued_ns, times)
        outputs = {name: result[name].data for name in output_names if name in result}
        return Completion(outputs, start_ns - queued_ns, times)

    async def _run(self, request: InferenceRequest) -> dict[str, InferInput]:
        tensors = {tensor.name: tensor for tensor in request.inputs}
        pending = list(self._steps)
        running: dict[asyncio.Task[dict[str, InferInput]], EnsembleStep] = {}
        try:
            while pending or running:
                ready = [step for step in pending if step.consumes <= tensors.keys()]
                for step in ready:
                    pending.remove(step)
                    task = asyncio.create_task(self._run_step(step, request, tensors))
                    running[task] = step
                if not running:
                    # Validation rules this out; an optional ensemble input left out can
                    # still starve a step, and that is the client's error to see.
                    names = ", ".join(f"'{s.model_name}'" for s in pending)
                    raise InternalError(
                        f"in ensemble '{self._name}', steps {names} never received all their inputs"
                    )
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    step = running.pop(task)
                    exc = task.exception()
                    if isinstance(exc, NaiadError):
                        raise _prefixed(exc, self._name, step)
                    if exc is not None:
                        raise InternalError(
                            f"in ensemble '{self._name}', step '{step.model_name}': "
                            f"{type(exc).__name__}: {exc}"
                        )
                    tensors.update(task.result())
        finally:
            # A failed step or a cancelled request: nothing else of this request runs.
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        return tensors

    async def _run_step(
        self, step: EnsembleStep, request: InferenceRequest, tensors: dict[str, InferInput]
    ) -> dict[str, InferInput]:
        model = self._resolve(step.model_name, step.model_version)
        if model.config.model_transaction_policy.decoupled:
            raise UnsupportedError(
                f"model '{step.model_name}' is decoupled; decoupled steps are not "
                "supported in ensembles yet"
            )
        step_request = InferenceRequest(
            model_name=step.model_name,
            model_version=step.model_version,
            id=request.id,
            inputs=[
                _renamed(tensors[tensor], input_name) for input_name, tensor in step.inputs.items()
            ],
            outputs=[RequestedOutput(name) for name in step.outputs],
            parameters=dict(request.parameters),
        )
        response = await model.infer(step_request)
        produced: dict[str, InferInput] = {}
        for output in response.outputs:
            name = step.outputs[output.name]
            produced[name] = InferInput(name, output.datatype, output.shape, output.data)
        return produced


def _renamed(tensor: InferInput, name: str) -> InferInput:
    return InferInput(name, tensor.datatype, tensor.shape, tensor.data, dict(tensor.parameters))
