"""The dynamic batcher (``dynamic_batching { ... }``): groups queued requests into one execution.

One batching task per model version waits for a free instance, then forms a batch
from the queue: the oldest request of the highest priority level, plus every later
request whose non-batch shapes match (inputs with ``allow_ragged_batch`` excepted,
for backends that take requests one by one) while the total stays within
``max_batch_size``. It sends the batch at once when it reaches ``max_batch_size`` or
the largest ``preferred_batch_size``; otherwise it waits for more requests until the
oldest one has waited ``max_queue_delay_microseconds``, then sends the largest
preferred size it can (or everything it has). With ``preserve_ordering``, responses
are released in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import now_ns
from naiad.core.scheduling.base import Completion, InstanceSlot, Scheduler, run_batch
from naiad.core.scheduling.default import InstancePool
from naiad.core.scheduling.queue import Pending, PriorityQueue
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.core.statistics import ComputeDurations, ModelStatistics
from naiad.errors import (
    CancelledError,
    InvalidArgumentError,
    NaiadError,
    UnavailableError,
)
from naiad.inference import InferenceRequest

logger = logging.getLogger("naiad.batcher")


class DynamicBatcher(Scheduler):
    def __init__(
        self,
        slots: Sequence[InstanceSlot],
        config: mc.ModelConfig,
        stats: ModelStatistics,
        rate_limiter: RateLimiter | None = None,
        ragged_inputs: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(slots)
        batching = config.dynamic_batching
        self._name = config.name
        self._max_batch_size = max(1, config.max_batch_size)
        self._preferred = sorted(
            {size for size in batching.preferred_batch_size if 0 < size <= self._max_batch_size}
        )
        self._max_delay_ns = batching.max_queue_delay_microseconds * 1000
        self._preserve_ordering = batching.preserve_ordering
        self._ragged_inputs = ragged_inputs
        self._queue = PriorityQueue(batching)
        self._pool = InstancePool(slots, rate_limiter)
        self._stats = stats
        self._arrival: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._in_order: deque[Pending] = deque()

    # -- submission ---------------------------------------------------------------

    def _shape_key(self, request: InferenceRequest) -> tuple[object, ...]:
        return tuple(
            (t.name, t.shape[1:]) for t in request.inputs if t.name not in self._ragged_inputs
        )

    async def submit(
        self, request: InferenceRequest, batch_size: int, output_names: Sequence[str]
    ) -> Completion:
        loop = asyncio.get_running_loop()
        self._start(loop)
        assert self._arrival is not None
        level = self._queue.level_for(request.parameters.get("priority", 0))
        pending = Pending(
            request=request,
            batch_size=max(1, batch_size),
            output_names=output_names,
            future=loop.create_future(),
            enqueued_ns=now_ns(),
            level=level,
            shape_key=self._shape_key(request),
            seq=self._queue.next_seq(),
        )
        requested_timeout = request.parameters.get("timeout", 0)
        if not isinstance(requested_timeout, int) or isinstance(requested_timeout, bool):
            raise InvalidArgumentError("the 'timeout' parameter must be an integer (microseconds)")
        timeout_us = self._queue.timeout_us(pending, requested_timeout)
        self._queue.push(pending)
        if timeout_us > 0:
            pending.deadline_ns = pending.enqueued_ns + timeout_us * 1000
            pending.timer = loop.call_later(timeout_us / 1e6, self._expire, pending)
        if self._preserve_ordering:
            self._in_order.append(pending)
        self._arrival.set()
        try:
            completion = await pending.future
        except asyncio.CancelledError:
            # The caller went away: never run a request nobody waits for.
            try:
                self._queue.remove(pending)
            except ValueError:
                pass  # already in a batch; its result will be dropped
            else:
                if pending.timer is not None:
                    pending.timer.cancel()
                self._finish(pending, CancelledError("request cancelled while queued"))
            raise
        assert isinstance(completion, Completion)
        return completion

    def _expire(self, pending: Pending) -> None:
        if pending.future.done():
            return
        if self._queue.expire(pending):
            self._finish(pending, UnavailableError("Request timeout expired"))

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._task is None:
            self._arrival = asyncio.Event()
            self._task = loop.create_task(self._batch_loop(), name=f"batcher-{self._name}")

    # -- batching -----------------------------------------------------------------

    async def _batch_loop(self) -> None:
        while True:
            slot = await self._pool.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._pool.release(slot)
                raise
            task = asyncio.get_running_loop().create_task(self._execute(slot, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _candidates(self) -> tuple[list[Pending], int]:
        """The batch that would be sent now, and its total batch size."""
        batch: list[Pending] = []
        total = 0
        for pending in self._queue.in_order():
            if batch and pending.shape_key != batch[0].shape_key:
                continue
            if total + pending.batch_size > self._max_batch_size and batch:
                continue
            batch.append(pending)
            total += pending.batch_size
            if total >= self._max_batch_size:
                break
        return batch, total

    async def _next_batch(self) -> list[Pending]:
        assert self._arrival is not None
        while True:
            batch, total = self._candidates()
            if not batch:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            waited_ns = now_ns() - batch[0].enqueued_ns
            full = total >= self._max_batch_size or (
                bool(self._preferred) and total >= self._preferred[-1]
            )
            if full or waited_ns >= self._max_delay_ns:
                if not full and self._preferred:
                    batch = _cut_to_preferred(batch, self._preferred)
                for pending in batch:
                    self._queue.remove(pending)
                    if pending.timer is not None:
                        pending.timer.cancel()
                return batch
            self._arrival.clear()
            remaining_s = (self._max_delay_ns - waited_ns) / 1e9
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), remaining_s)

    async def _execute(self, slot: InstanceSlot, batch: list[Pending]) -> None:
        names = _union_outputs(batch)
        try:
            run = await run_batch(slot.instance, [p.request for p in batch], names, self._name)
        finally:
            self._pool.release(slot)
        total = sum(p.batch_size for p in batch)
        self._stats.record_execution(total, ComputeDurations.from_times(run.times))
        for pending, result in zip(batch, run.results, strict=True):
            self._finish(pending, Completion(result, run.start_ns - pending.enqueued_ns, run.times))

    def _finish(self, pending: Pending, outcome: Completion | NaiadError) -> None:
        if not self._preserve_ordering:
            _resolve(pending, outcome)
            return
        pending.outcome = outcome
        while self._in_order and self._in_order[0].outcome is not None:
            head = self._in_order.popleft()
            assert isinstance(head.outcome, Completion | NaiadError)
            _resolve(head, head.outcome)

    def pending_count(self) -> int:
        # A batch leaves the queue only once an instance is free to execute it.
        return len(self._queue)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        super().close()


def _resolve(pending: Pending, outcome: Completion | NaiadError) -> None:
    if pending.future.done():
        return
    if isinstance(outcome, NaiadError):
        pending.future.set_exception(outcome)
    else:
        pending.future.set_result(outcome)


def _cut_to_preferred(batch: list[Pending], preferred: list[int]) -> list[Pending]:
    """Keep the longest prefix whose size is a preferred size, if there is one."""
    total = 0
    best = 0
    for index, pending in enumerate(batch, start=1):
        total += pending.batch_size
        if total in preferred:
            best = index
    return batch[:best] if best else batch


def _union_outputs(batch: list[Pending]) -> list[str]:
    names: dict[str, None] = {}
    for pending in batch:
        for name in pending.output_names:
            names[name] = None
    return list(names)
