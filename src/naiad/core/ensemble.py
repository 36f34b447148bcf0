"""Run an ensemble's steps: the scheduler of models with ``platform: "ensemble"``.

An ensemble has no backend and no instances. Its "execution" sends one request per
step to the step model through the core (:meth:`ModelVersion.infer`), so each step is
validated, queued by its own scheduler (its dynamic batcher, say) and counted in its
own statistics, exactly as a request from a client would be. Steps start as soon as
every tensor they consume exists, each in its own task, so independent branches run
at the same time. Step models are looked up at request time, so a step that is
reloaded is picked up without reloading the ensemble.

A decoupled step is streamed (:meth:`ModelVersion.infer_stream`); each of its
responses runs the steps downstream of it in a child flow that also sees the outer
flow's tensors, and each child that completes the ensemble outputs sends them to the
client through the request's ``response_sink`` (the ensemble is then decoupled).

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
from naiad.inference import InferenceRequest, InferenceResponse, InferInput, RequestedOutput

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
        sink = request.response_sink  # set when the ensemble is streamed (decoupled)
        emitted: list[dict[str, InferInput]] = []

        def emit(tensors: dict[str, InferInput]) -> None:
            if sink is None:
                emitted.append(tensors)
            else:
                sink({name: tensors[name].data for name in output_names if name in tensors}, False)

        try:
            start_ns = now_ns()
            result: dict[str, InferInput] | NaiadError
            try:
                top = _Flow(list(self._steps), None, _Signal())
                top.tensors = {tensor.name: tensor for tensor in request.inputs}
                await self._run_flow(request, top, output_names, emit, streamed=sink is not None)
                result = emitted[-1] if emitted else top.tensors
            except _StepFailure as failure:
                result = failure.error
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
        if sink is not None:
            # Streamed: the outputs went out as they were made; close with the final flag.
            sink(result if isinstance(result, NaiadError) else None, True)
            return Completion({}, start_ns - queued_ns, times)
        if isinstance(result, NaiadError):
            return Completion(result, start_ns - queued_ns, times)
        outputs = {name: result[name].data for name in output_names if name in result}
        return Completion(outputs, start_ns - queued_ns, times)

    def _is_decoupled(self, step: EnsembleStep) -> bool:
        try:
            return self._resolve(step.model_name, step.model_version).decoupled
        except NaiadError:
            return False  # running the step reports the error, with the step named

    def _forks(self, steps: list[EnsembleStep]) -> dict[int, list[EnsembleStep]]:
        """The outermost decoupled steps among ``steps`` (by index), each with the steps
        downstream of it (those run once per response of the decoupled step)."""
        decoupled = [step for step in steps if self._is_decoupled(step)]
        if not decoupled:
            return {}
        down = {d.index: _downstream(d, steps) for d in decoupled}
        top = [d for d in decoupled if not any(d in down[o.index] for o in decoupled if o is not d)]
        for index, first in enumerate(top):
            for second in top[index + 1 :]:
                if {s.index for s in down[first.index]} & {s.index for s in down[second.index]}:
                    raise UnsupportedError(
                        f"in ensemble '{self._name}', the streams of decoupled steps "
                        f"'{first.model_name}' and '{second.model_name}' meet in one step; "
                        "joining two decoupled streams is not supported"
                    )
        return {d.index: down[d.index] for d in top}

    async def _run_flow(
        self,
        request: InferenceRequest,
        flow: _Flow,
        output_names: Sequence[str],
        emit: Callable[[dict[str, InferInput]], None],
        streamed: bool,
    ) -> None:
        """Run ``flow``'s steps, each once its inputs exist; a decoupled step's
        responses each run the steps downstream of it in a child flow."""
        forks = self._forks(flow.steps)
        if forks and not streamed:
            names = ", ".join(f"'{s.model_name}'" for s in flow.steps if s.index in forks)
            raise UnsupportedError(
                f"ensemble '{self._name}' has decoupled steps ({names}); use a streaming "
                "API (gRPC ModelStreamInfer, HTTP generate_stream)"
            )
        forked = {step.index for downstream in forks.values() for step in downstream}
        pending = [step for step in flow.steps if step.index not in forked]
        running: dict[asyncio.Task[dict[str, InferInput]], EnsembleStep] = {}
        flow.emit_if_complete(output_names, emit)
        try:
            while pending or running:
                # A cancelled request is cancelled at the await below, so it starts no
                # further step (streamed requests are not cancelled: core/streaming.py
                # never cancels a decoupled submit).
                ready = [step for step in pending if flow.has(step.consumes)]
                for step in ready:
                    pending.remove(step)
                    if step.index in forks:
                        work = self._run_decoupled(
                            step, request, flow, forks[step.index], output_names, emit
                        )
                    else:
                        work = self._run_step(step, request, flow)
                    running[asyncio.create_task(work)] = step
                flow.producing = any(
                    step.index not in forks for step in [*pending, *running.values()]
                )
                flow.signal.notify()
                if not running:
                    if flow.parent is not None and flow.parent.still_producing():
                        await flow.signal.wait()  # a tensor from an outer flow may come
                        continue
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
                    if isinstance(exc, _StepFailure):
                        raise exc  # already names the step that failed, in a child flow
                    if isinstance(exc, NaiadError):
                        raise _StepFailure(_prefixed(exc, self._name, step))
                    if exc is not None:
                        raise _StepFailure(
                            InternalError(
                                f"in ensemble '{self._name}', step '{step.model_name}': "
                                f"{type(exc).__name__}: {exc}"
                            )
                        )
                    flow.tensors.update(task.result())
                    flow.emit_if_complete(output_names, emit)
        finally:
            # A failed step or a cancelled request: nothing else of this request runs.
            flow.producing = False
            flow.signal.notify()
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _run_decoupled(
        self,
        step: EnsembleStep,
        request: InferenceRequest,
        flow: _Flow,
        downstream: list[EnsembleStep],
        output_names: Sequence[str],
        emit: Callable[[dict[str, InferInput]], None],
    ) -> dict[str, InferInput]:
        """Stream a decoupled step; each response runs ``downstream`` in a child flow."""
        model = self._resolve(step.model_name, step.model_version)
        children: set[asyncio.Task[None]] = set()
        try:
            async for item in model.infer_stream(self._step_request(step, request, flow)):
                if item.error is not None:
                    raise item.error
                if item.response is None or item.empty:
                    continue  # a flag-only final
                child = _Flow(downstream, flow, flow.signal)
                child.tensors = _produced(step, item.response)
                work = self._run_flow(request, child, output_names, emit, streamed=True)
                children.add(asyncio.create_task(work))
                for task in [t for t in children if t.done()]:
                    children.discard(task)
                    task.result()  # a failed child fails the request now
            while children:
                done, children = await asyncio.wait(children, return_when=asyncio.FIRST_EXCEPTION)
                for task in done:
                    task.result()
        finally:
            for task in children:
                task.cancel()
            if children:
                await asyncio.gather(*children, return_exceptions=True)
        return {}  # its tensors live in the child flows

    def _step_request(
        self, step: EnsembleStep, request: InferenceRequest, flow: _Flow
    ) -> InferenceRequest:
        return InferenceRequest(
            model_name=step.model_name,
            model_version=step.model_version,
            id=request.id,
            inputs=[_renamed(flow.get(tensor), name) for name, tensor in step.inputs.items()],
            outputs=[RequestedOutput(name) for name in step.outputs],
            parameters=dict(request.parameters),
        )

    async def _run_step(
        self, step: EnsembleStep, request: InferenceRequest, flow: _Flow
    ) -> dict[str, InferInput]:
        model = self._resolve(step.model_name, step.model_version)
        response = await model.infer(self._step_request(step, request, flow))
        return _produced(step, response)


class _StepFailure(Exception):
    """A step's error, already prefixed with the ensemble and the step."""

    def __init__(self, error: NaiadError) -> None:
        super().__init__(error.message)
        self.error = error


class _Signal:
    """Wakes flows waiting for tensors of an outer flow; shared by one request's flows."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()  # earlier waiters wake; later ones wait afresh

    async def wait(self) -> None:
        await self._event.wait()


class _Flow:
    """The tensors of one pass through some steps: the whole ensemble, or the steps
    downstream of a decoupled step for one of its responses (which also see the
    tensors of the flows around them)."""

    def __init__(self, steps: list[EnsembleStep], parent: _Flow | None, signal: _Signal) -> None:
        self.steps = steps
        self.parent = parent
        self.signal = signal
        self.tensors: dict[str, InferInput] = {}
        self.producing = True  # steps of this flow (not its children) may add tensors
        self._emitted = False

    def get(self, name: str) -> InferInput:
        flow: _Flow | None = self
        while flow is not None:
            if name in flow.tensors:
                return flow.tensors[name]
            flow = flow.parent
        raise InternalError(f"ensemble tensor '{name}' does not exist")

    def has(self, names: frozenset[str]) -> bool:
        return all(any(name in f.tensors for f in self._chain()) for name in names)

    def still_producing(self) -> bool:
        return any(flow.producing for flow in self._chain())

    def _chain(self) -> list[_Flow]:
        chain: list[_Flow] = []
        flow: _Flow | None = self
        while flow is not None:
            chain.append(flow)
            flow = flow.parent
        return chain

    def emit_if_complete(
        self, names: Sequence[str], emit: Callable[[dict[str, InferInput]], None]
    ) -> None:
        """Emit the outputs once all exist; a child flow only once it made one of them
        (outputs made by outer flows alone belong to those flows' response)."""
        if self._emitted or not self.has(frozenset(names)):
            return
        if self.parent is not None and not any(name in self.tensors for name in names):
            return
        self._emitted = True
        emit({name: self.get(name) for name in names})


def _downstream(step: EnsembleStep, steps: list[EnsembleStep]) -> list[EnsembleStep]:
    """The steps that consume, directly or through other steps, what ``step`` makes."""
    made = set(step.outputs.values())
    found: list[EnsembleStep] = []
    grew = True
    while grew:
        grew = False
        for other in steps:
            if other is not step and other not in found and other.consumes & made:
                found.append(other)
                made |= set(other.outputs.values())
                grew = True
    return found


def _produced(step: EnsembleStep, response: InferenceResponse) -> dict[str, InferInput]:
    produced: dict[str, InferInput] = {}
    for output in response.outputs:
        name = step.outputs[output.name]
        produced[name] = InferInput(name, output.datatype, output.shape, output.data)
    return produced


def _renamed(tensor: InferInput, name: str) -> InferInput:
    return InferInput(name, tensor.datatype, tensor.shape, tensor.data, dict(tensor.parameters))
