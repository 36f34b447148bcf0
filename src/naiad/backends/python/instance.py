"""A python-backend model instance: one worker process, driven from the server's event loop.

Batches go to the worker as one frame each and their futures wait for the answer; the
loop never blocks. A thread per worker waits for the process to end: if it dies while
the instance is in use (a crash, SIGKILL), the requests it was running fail at once
with UNAVAILABLE, the instance reports not ready, and the same thread starts and
initializes a new worker (retrying with back-off), while new requests wait for it.
With an execute timeout (``naiad_execute_timeout_s``), a batch still running when it
expires means a hung model: the server fails what that worker was running with
UNAVAILABLE, kills it, and the same restart follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from naiad.backends.base import (
    ExecuteResult,
    ExecutionTimes,
    ModelInstance,
    gather_batch,
    now_ns,
    scatter_batch,
)
from naiad.backends.python.bls import BlsServer
from naiad.backends.python.codec import decode_results, encode_batch
from naiad.backends.python.metrics import WorkerMetrics
from naiad.backends.python.runtime._naiad_pb.messages import (
    BLS_REQUEST,
    EXECUTE_DONE,
    INIT_DONE,
    IS_READY_DONE,
    LOG,
    METRICS,
    STREAM_RESPONSE,
    CancelMsg,
    InitDoneMsg,
    InitMsg,
    IsReadyMsg,
)
from naiad.backends.python.runtime._naiad_pb.wire import Frame, PayloadBuilder
from naiad.backends.python.streams import OpenStreams
from naiad.backends.python.worker_process import (
    Interpreter,
    WorkerProcess,
    describe_exit,
    forward_log,
)
from naiad.errors import ModelLoadError, NaiadError, UnavailableError
from naiad.inference import InferenceRequest, InferInput, RequestedOutput

logger = logging.getLogger("naiad.python")

# Batches an instance with ``async def execute`` runs at once (they overlap on its loop).
ASYNC_MAX_CONCURRENCY = 64
# Model is_ready() results are refreshed at most this often (the call is asynchronous).
IS_READY_REFRESH_S = 0.5
# A dead channel whose process has not been reaped yet fails its requests after this.
EOF_GRACE_S = 2.0
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

READY, RESTARTING, FAILED, CLOSED = "ready", "restarting", "failed", "closed"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything needed to start (and restart) one instance's worker."""

    interpreter: Interpreter
    init: InitMsg
    label: str


def start_worker(spec: WorkerSpec) -> tuple[WorkerProcess, InitDoneMsg]:
    """Start a worker and run the model's ``initialize`` (blocking)."""
    worker = WorkerProcess.spawn(spec.interpreter, spec.label)
    try:
        frame = worker.exchange(spec.init.to_header(), INIT_DONE)
    except BaseException:
        worker.stop()
        raise
    done = InitDoneMsg.from_header(frame.header)
    if done.error is not None:
        worker.stop()
        raise ModelLoadError(f"{spec.label}: initialize() failed: {done.error}")
    return worker, done


class PythonInstance(ModelInstance):
    # Requests reach the model one by one (pb_utils has no batched tensors), unless the
    # model opts in to stacked batches (the backend sets this from its config).
    stacks_batches = False
    # Seconds a batch may run before its worker counts as hung (None: no limit).
    execute_timeout_s: float | None = None
    # model_transaction_policy { decoupled: true }: responses arrive as stream frames.
    decoupled = False

    def __init__(self, spec: WorkerSpec, worker: WorkerProcess, done: InitDoneMsg) -> None:
        self._spec = spec
        self._lock = threading.Lock()
        self._state = READY
        self._worker: WorkerProcess | None = worker
        self._attached: WorkerProcess | None = None
        self._error = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._next_batch = 0
        self._is_async = done.is_async
        self._has_is_ready = done.has_is_ready
        self._model_ready = done.ready
        self._ready_checked_s = 0.0
        self._metrics = WorkerMetrics(spec.label)
        self._streams = OpenStreams()
        self._bls = BlsServer(spec.init.shared_memory, spec.init.shm_threshold_bytes)
        self._watch(worker)

    async def _execute_stacked(
        self,
        requests: Sequence[InferenceRequest],
        output_names: Sequence[str],
        times: ExecutionTimes,
    ) -> list[ExecuteResult]:
        """The stacked-batch opt-in: one request holding the whole batch, split back after.

        The batcher only groups requests whose non-batch shapes match, so every input
        concatenates along the batch axis; outputs are split back as views.
        """
        first = requests[0]
        stacked = InferenceRequest(
            model_name=first.model_name,
            model_version=first.model_version,
            id=first.id,
            inputs=[
                InferInput(name, tensor.datatype, tuple(array.shape), array)
                for (name, array), tensor in zip(
                    gather_batch(requests).items(), first.inputs, strict=True
                )
            ],
            outputs=[RequestedOutput(name) for name in output_names],
            parameters=dict(first.parameters),
        )
        (result,) = await self.execute([stacked], output_names, times)
        if isinstance(result, NaiadError):
            return [result] * len(requests)
        sizes = [request.inputs[0].shape[0] for request in requests]
        return scatter_batch(result, sizes)

    @property
    def max_concurrency(self) -> int:
        return ASYNC_MAX_CONCURRENCY if self._is_async else 1

    @property
    def pipeline_depth(self) -> int:
        # A sync execute takes batches up one after another, so the next one can wait in
        # the worker's socket. Not with an execute timeout (the timer would count the
        # wait) nor for decoupled models (responses interleave with execute's return).
        if self._is_async or self.decoupled or self.execute_timeout_s is not None:
            return 1
        return 2

    @property
    def pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None else None

    # -- serving -----------------------------------------------------------------------

    async def execute(
        self,
        requests: Sequence[InferenceRequest],
        output_names: Sequence[str],
        times: ExecutionTimes,
    ) -> list[ExecuteResult]:
        if self.stacks_batches and len(requests) > 1:
            return await self._execute_stacked(requests, output_names, times)
        worker = self._worker
        loop = self._loop
        if self._state != READY or worker is None or worker is not self._attached or loop is None:
            worker = await self._ready_worker()
            loop = asyncio.get_running_loop()
        # else: the usual case, a ready worker already on this loop (no lock, no waiting).
        if worker.channel.closed:
            raise UnavailableError(f"{self._spec.label}: lost the connection to its worker")
        times.compute_start_ns = now_ns()
        batch = self._next_batch
        self._next_batch += 1
        init = self._spec.init
        payload = PayloadBuilder(init.shared_memory, init.shm_threshold_bytes)
        header = encode_batch(batch, requests, output_names, payload)
        future: asyncio.Future[Frame] = loop.create_future()
        self._pending[batch] = future
        for index, request in enumerate(requests):
            request.cancel_hook = partial(self._cancel, worker, batch, index)
        timer = None
        if self.execute_timeout_s is not None:
            timer = loop.call_later(self.execute_timeout_s, self._hung, worker)
        if self.decoupled:
            self._streams.open(batch, requests)
        try:
            worker.channel.send(header, payload)
            times.compute_input_end_ns = now_ns()
            frame = await future
        finally:
            self._pending.pop(batch, None)
            if timer is not None:
                timer.cancel()
        times.compute_output_start_ns = now_ns()
        started_ns = frame.header.get("started_ns") or 0
        if started_ns > times.compute_input_end_ns:
            # Sent ahead of time: the wait in the worker's socket was queue time.
            waited_ns = started_ns - times.compute_input_end_ns
            times.compute_start_ns += waited_ns
            times.compute_input_end_ns = started_ns
        if self.decoupled:
            return self._streams.execute_done(frame, len(requests))
        results = decode_results(frame, len(requests))
        times.compute_end_ns = now_ns()
        return results

    @staticmethod
    def _cancel(worker: WorkerProcess, batch: int, index: int) -> None:
        """On the loop: the client of request ``index`` of ``batch`` went away."""
        if worker.gone or worker.channel.closed:
            return
        with contextlib.suppress(OSError):
            worker.channel.send(CancelMsg(batch, index).to_header())

    def is_ready(self) -> bool:
        self._bind_loop()
        if self._state != READY:
            return False
        if self._has_is_ready:
            self._refresh_model_ready()
            return self._model_ready
        return True

    async def _ready_worker(self) -> WorkerProcess:
        self._bind_loop()
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                state, worker = self._state, self._worker
                if state == RESTARTING:
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.append(waiter)
            if state == READY and worker is not None:
                if self._attached is not worker:
                    self._attach(worker)
                return worker
            if state == CLOSED:
                raise UnavailableError(f"{self._spec.label} is unloaded")
            if state == FAILED:
                raise UnavailableError(
                    f"{self._spec.label} is not available: its worker crashed and could not "
                    f"be restarted yet ({self._error})"
                )
            await waiter

    def _bind_loop(self) -> None:
        if self._loop is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        with self._lock:
            self._loop = loop
            worker = self._worker if self._state == READY else None
        if worker is not None:
            self._attach(worker)

    def _attach(self, worker: WorkerProcess) -> None:
        assert self._loop is not None
        worker.channel.attach(
            self._loop, partial(self._on_frame, worker), lambda error: self._on_eof(worker)
        )
        self._attached = worker

    def _on_frame(self, worker: WorkerProcess, frame: Frame) -> None:
        kind = frame.header.get("k")
        if kind == EXECUTE_DONE:
            future = self._pending.get(frame.header["batch"])
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == STREAM_RESPONSE:
            self._streams.on_response(frame)
        elif kind == BLS_REQUEST:
            self._bls.handle(worker.channel, frame)
        elif kind == LOG:
            forward_log(frame.header, worker.pid)
        elif kind == METRICS:
            self._metrics.update(frame.header.get("families"))
        elif kind == IS_READY_DONE:
            self._model_ready = bool(frame.header.get("ready"))
            if frame.header.get("error"):
                logger.warning("%s: is_ready() failed: %s", self._spec.label, frame.header["error"])

    def _refresh_model_ready(self) -> None:
        now = time.monotonic()
        worker = self._attached
        if worker is None or now - self._ready_checked_s < IS_READY_REFRESH_S:
            return
        self._ready_checked_s = now
        worker.channel.send(IsReadyMsg().to_header())

    # -- crashes and restarts ------------------------------------------------------------

    def _watch(self, worker: WorkerProcess) -> None:
        threading.Thread(
            target=self._watch_worker, args=(worker,), name="naiad-worker-watch", daemon=True
        ).start()

    def _watch_worker(self, worker: WorkerProcess) -> None:
        code = worker.process.wait()
        with self._lock:
            # A worker killed as hung was taken out of service already (and is gone).
            if self._state == CLOSED or (worker is not self._worker and not worker.gone):
                return  # unloaded, or already replaced
            self._state = RESTARTING
            self._worker = None
            loop = self._loop
        why = describe_exit(code)
        logger.error(
            "%s: the python backend worker (pid %d) %s; restarting it",
            self._spec.label,
            worker.pid,
            why,
        )
        error = UnavailableError(
            f"{self._spec.label}: the python backend worker (pid {worker.pid}) {why} while "
            "running this request; the instance is being restarted"
        )
        if not self._call_on_loop(loop, self._worker_gone, worker, error):
            worker.channel.close()
        self._restart()

    def _hung(self, worker: WorkerProcess) -> None:
        """On the loop: a batch ran past the execute timeout; kill and replace the worker."""
        if worker.gone:
            return
        logger.error(
            "%s: execute did not finish within %ss; killing the python backend worker (pid %d)",
            self._spec.label,
            self.execute_timeout_s,
            worker.pid,
        )
        error = UnavailableError(
            f"{self._spec.label}: execute did not finish within {self.execute_timeout_s}s "
            f"(naiad_execute_timeout_s); the python backend worker (pid {worker.pid}) was "
            "killed and the instance is being restarted"
        )
        # Out of service at once (new requests wait for the restart), and its requests
        # failed first, so the watcher's report of the kill does not replace this error;
        # the watcher then restarts the instance as after any crash.
        with self._lock:
            if self._worker is worker and self._state == READY:
                self._state = RESTARTING
                self._worker = None
        self._worker_gone(worker, error)
        with contextlib.suppress(ProcessLookupError):
            worker.process.kill()

    def _worker_gone(self, worker: WorkerProcess, error: NaiadError) -> None:
        """On the loop: fail what the dead worker was running (once per worker)."""
        if worker.gone:
            return
        worker.gone = True
        worker.channel.close()
        if self._attached is worker:
            self._attached = None
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        self._streams.fail_all(error)

    def _on_eof(self, worker: WorkerProcess) -> None:
        # The watcher thread reports the death with its exit status; should the process
        # linger without its socket, fail its requests anyway after a grace period.
        assert self._loop is not None
        error = UnavailableError(f"{self._spec.label}: lost the connection to its worker")
        self._loop.call_later(EOF_GRACE_S, self._worker_gone, worker, error)

    def _restart(self) -> None:
        """In the watcher thread: start workers until one initializes (or we are closed)."""
        attempt = 0
        while True:
            try:
                worker, done = start_worker(self._spec)
            except NaiadError as exc:
                delay = RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)]
                attempt += 1
                logger.error("%s: restart failed (retry in %ss): %s", self._spec.label, delay, exc)
                if not self._settle(FAILED, None, None, exc.message):
                    return
                time.sleep(delay)
                with self._lock:
                    if self._state == CLOSED:
                        return
                    self._state = RESTARTING
                continue
            if self._settle(READY, worker, done, ""):
                logger.info("%s: restarted (worker pid %d)", self._spec.label, worker.pid)
                self._watch(worker)
            else:
                worker.finalize()
            return

    def _settle(
        self, state: str, worker: WorkerProcess | None, done: InitDoneMsg | None, error: str
    ) -> bool:
        """Leave RESTARTING for ``state``; False when the instance was closed meanwhile."""
        with self._lock:
            if self._state == CLOSED:
                return False
            self._state = state
            self._worker = worker
            self._error = error
            if done is not None:
                self._is_async = done.is_async
                self._model_ready = done.ready
            loop = self._loop
        self._call_on_loop(loop, self._wake_waiters)
        return True

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @staticmethod
    def _call_on_loop(
        loop: asyncio.AbstractEventLoop | None, callback: Callable[..., Any], *args: Any
    ) -> bool:
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed in between
            return False
        return True

    # -- unloading ---------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._state == CLOSED:
                return
            self._state = CLOSED
            worker, self._worker = self._worker, None
            loop = self._loop
        self._metrics.close()
        if loop is not None and not loop.is_closed():
            self._on_loop_and_wait(loop, self._release_loop)
        if worker is not None:
            worker.finalize()

    def _release_loop(self) -> None:
        """On the loop: stop watching the socket and wake anyone waiting for a restart."""
        attached, self._attached = self._attached, None
        if attached is not None and not attached.channel.closed:
            attached.channel.detach()
        self._wake_waiters()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(UnavailableError(f"{self._spec.label} was unloaded"))
        self._streams.fail_all(UnavailableError(f"{self._spec.label} was unloaded"))

    @staticmethod
    def _on_loop_and_wait(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or not loop.is_running():
            callback()
            return
        done = threading.Event()

        def run() -> None:
            try:
                callback()
            finally:
                done.set()

        loop.call_soon_threadsafe(run)
        done.wait(timeout=5.0)
