"""The backend protocol: what the core asks of any backend.

A :class:`Backend` is chosen by the config's ``backend`` name through the registry. It
may complete a partial config (``auto_complete_config``) and it creates one
:class:`ModelInstance` per instance of the model's ``instance_group``. The core hands
an instance a batch of validated requests and gets back, per request, a mapping of
output name to array, or an error for that request alone.

Native backends (ONNX Runtime, ...) release the GIL, so :class:`ThreadedInstance` runs
them on a thread of their own: it gathers a batch into one array per input (one copy),
runs the model, and splits the outputs back into per-request views (no copy).
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import NaiadError
from naiad.inference import InferenceRequest

# Per request: its outputs by name, or the error that failed that request alone.
ExecuteResult = dict[str, np.ndarray] | NaiadError


@dataclass(frozen=True, slots=True)
class ModelContext:
    """Where a model version lives and how it is configured (read-only for backends)."""

    name: str
    version: int
    config: mc.ModelConfig
    model_dir: Path

    @property
    def version_dir(self) -> Path:
        return self.model_dir / str(self.version)

    def model_file(self, default_filename: str) -> Path:
        """The model file of this version: ``default_model_filename`` or the backend default."""
        return self.version_dir / (self.config.default_model_filename or default_filename)


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """One instance to create: its group, index and kind (``KIND_CPU``, ...)."""

    group_name: str
    index: int
    kind: int
    device_id: int = 0

    @property
    def name(self) -> str:
        return f"{self.group_name}_{self.index}"


@dataclass(slots=True)
class ExecutionTimes:
    """Monotonic nanosecond stamps of one execution, for Triton's compute statistics.

    An instance that can tell input preparation, inference and output handling apart
    fills all four; the scheduler fills whatever is left at 0 from its own clock.
    """

    compute_start_ns: int = 0
    compute_input_end_ns: int = 0
    compute_output_start_ns: int = 0
    compute_end_ns: int = 0


def now_ns() -> int:
    return time.monotonic_ns()


class ModelInstance(abc.ABC):
    """One running copy of a model version."""

    @abc.abstractmethod
    async def execute(
        self,
        requests: Sequence[InferenceRequest],
        output_names: Sequence[str],
        times: ExecutionTimes,
    ) -> list[ExecuteResult]:
        """Run a batch of validated requests; one result per request, in order.

        ``output_names`` are the outputs to produce (the union of what the requests
        asked for). Raising fails every request of the batch with that error.
        """

    def is_ready(self) -> bool:
        """False while the instance cannot serve (for example while it restarts)."""
        return True

    @property
    def max_concurrency(self) -> int:
        """How many batches the instance may execute at once (1: one after another).

        Schedulers hand an instance up to this many batches concurrently; python models
        with ``async def execute`` overlap them on their worker's event loop.
        """
        return 1

    @property
    def pipeline_depth(self) -> int:
        """How many single requests the default scheduler may hand over ahead of time.

        An instance that queues work on a thread of its own runs queued requests back to
        back; handing it the next one only once the last has come back to the event loop
        would leave it idle for a loop round trip between runs. 1: no look-ahead.
        """
        return 1

    def close(self) -> None:  # noqa: B027 - most instances need no cleanup
        """Release what the instance holds; called once, after its last execute."""


class Backend(abc.ABC):
    """A kind of model runtime, selected by the config's ``backend`` name."""

    name: str = ""

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        """Fill in what the config leaves out (inputs, outputs, ``max_batch_size``) in place.

        Called only when auto-complete is enabled. The default completes nothing.
        """
        return None

    @abc.abstractmethod
    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        """Load one instance (blocking; the core calls it off the event loop)."""


class InstanceThread:
    """One thread that runs an instance's work items in the order they were posted.

    Leaner than a one-worker ``ThreadPoolExecutor`` on the per-request path: posting is a
    queue put, with no ``Future`` and no worker-count check per item.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[object, ...]] | None]
        self._queue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def post(self, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)`` on the thread; ``fn`` reports its own outcome and must not raise."""
        self._queue.put((fn, args))

    def call(self, fn: Callable[..., object], *args: object) -> object:
        """Run ``fn(*args)`` on the thread and wait for its result (set-up work, not per request)."""
        future: concurrent.futures.Future[object] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.post(run)
        return future.result()

    def shutdown(self) -> None:
        """Finish what was posted, then stop the thread."""
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args = item
            try:
                fn(*args)
            except BaseException:  # a broken item must not take the instance's thread with it
                logging.getLogger("naiad.backend").exception("instance thread work item failed")


class ThreadedInstance(ModelInstance):
    """An instance whose blocking ``run`` executes on a thread of its own."""

    def __init__(self, thread_name: str) -> None:
        self._executor = InstanceThread(thread_name)

    @abc.abstractmethod
    def run(
        self, inputs: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Run the model on whole-batch inputs and return the named outputs (blocking)."""

    @property
    def pipeline_depth(self) -> int:
        return 2

    async def execute(
        self,
        requests: Sequence[InferenceRequest],
        output_names: Sequence[str],
        times: ExecutionTimes,
    ) -> list[ExecuteResult]:
        loop = asyncio.get_running_loop()
        if len(requests) == 1:
            inputs = {tensor.name: tensor.data for tensor in requests[0].inputs}
            gather_ns = 0
        else:
            gathered_ns = now_ns()
            sizes = [request.inputs[0].shape[0] if request.inputs else 1 for request in requests]
            inputs = gather_batch(requests)
            gather_ns = now_ns() - gathered_ns
        # A bare loop future resolved from the thread, not run_in_executor: that chains a
        # concurrent future to an asyncio one through callbacks on both sides and costs
        # about 20 us more per hop (benchmarks in docs/performance.md).
        future: asyncio.Future[dict[str, np.ndarray]] = loop.create_future()
        self._executor.post(self._run_for, loop, future, inputs, output_names, times, gather_ns)
        outputs = await future
        if len(requests) == 1:
            return [outputs]
        # Splitting the batch is output work; the wait for the loop before it is not (as
        # gathering counts as input work, not the wait on the thread).
        scattered_ns = now_ns()
        results = scatter_batch(outputs, sizes)
        times.compute_end_ns += now_ns() - scattered_ns
        return results

    def _run_for(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[dict[str, np.ndarray]],
        inputs: dict[str, np.ndarray],
        output_names: Sequence[str],
        times: ExecutionTimes,
        gather_ns: int,
    ) -> None:
        """On the instance's thread: run, then hand the outcome to the loop's future.

        The compute stamps are taken here, not on the loop: a request handed over ahead
        of time (``pipeline_depth``) waits on this thread first, and that wait is queue
        time, not compute.
        """
        if future.cancelled():
            return  # the caller went away before the run started: skip it, as before
        started_ns = now_ns()
        times.compute_start_ns = started_ns - gather_ns
        times.compute_input_end_ns = started_ns
        try:
            outputs = self.run(inputs, output_names)
        except BaseException as exc:  # the caller re-raises it, as run_in_executor did
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            # The loop may take a while to pick the outcome up under load; that wait is
            # nobody's compute time.
            times.compute_output_start_ns = times.compute_end_ns = now_ns()
            loop.call_soon_threadsafe(_settle, future, outputs, None)

    def close(self) -> None:
        self._executor.shutdown()


def _settle(
    future: asyncio.Future[dict[str, np.ndarray]],
    outputs: dict[str, np.ndarray] | None,
    error: BaseException | None,
) -> None:
    if future.done():  # cancelled while running; its outcome has no one to go to
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert outputs is not None
        future.set_result(outputs)


def gather_batch(requests: Sequence[InferenceRequest]) -> dict[str, np.ndarray]:
    """Concatenate each input across requests along the batch axis (one copy per input)."""
    names = [tensor.name for tensor in requests[0].inputs]
    per_name = [request.input_map() for request in requests]
    return {name: np.concatenate([inputs[name].data for inputs in per_name]) for name in names}


def scatter_batch(outputs: dict[str, np.ndarray], sizes: Sequence[int]) -> list[ExecuteResult]:
    """Split whole-batch outputs back into per-request views along the batch axis."""
    results: list[ExecuteResult] = []
    start = 0
    for size in sizes:
        results.append({name: array[start : start + size] for name, array in outputs.items()})
        start += size
    return results
