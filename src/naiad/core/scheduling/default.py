"""The default scheduler: each request runs, unbatched, on the next free instance.

Free instances wait in a FIFO queue, so requests are served in arrival order and no
instance runs two requests at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from naiad.backends.base import ExecutionTimes, now_ns
from naiad.core.scheduling.base import Completion, InstanceSlot, Scheduler, fill_times
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.core.statistics import ComputeDurations, ModelStatistics
from naiad.inference import InferenceRequest


class InstancePool:
    """Idle instances in FIFO order, with the rate limiter (if any) in front of them."""

    def __init__(self, slots: Sequence[InstanceSlot], rate_limiter: RateLimiter | None) -> None:
        self._slots = list(slots)
        self._rate_limiter = rate_limiter
        self._idle: asyncio.Queue[InstanceSlot] | None = None

    def _queue(self) -> asyncio.Queue[InstanceSlot]:
        # Created lazily so it binds to the running loop, not to whichever built us.
        if self._idle is None:
            self._idle = asyncio.Queue()
            # An instance that runs several batches at once (max_concurrency) is queued
            # once per batch it may run, interleaved so that load spreads over instances.
            rounds = max((slot.instance.max_concurrency for slot in self._slots), default=1)
            for round_ in range(rounds):
                for slot in self._slots:
                    if round_ < slot.instance.max_concurrency:
                        self._idle.put_nowait(slot)
        return self._idle

    async def acquire(self) -> InstanceSlot:
        slot = await self._queue().get()
        if self._rate_limiter is not None:
            try:
                await self._rate_limiter.acquire(slot.resources, slot.priority)
            except BaseException:
                self._queue().put_nowait(slot)
                raise
        return slot

    def release(self, slot: InstanceSlot) -> None:
        if self._rate_limiter is not None:
            self._rate_limiter.release(slot.resources)
        if slot in self._slots:
            self._queue().put_nowait(slot)

    def add(self, slot: InstanceSlot) -> None:
        self._slots.append(slot)
        self._queue().put_nowait(slot)

    async def remove(self, count: int) -> list[InstanceSlot]:
        """Take ``count`` instances out of service, each once it is idle."""
        removed: list[InstanceSlot] = []
        for _ in range(count):
            slot = await self._queue().get()
            self._slots.remove(slot)
            removed.append(slot)
        return removed


class DefaultScheduler(Scheduler):
    def __init__(
        self,
        slots: Sequence[InstanceSlot],
        stats: ModelStatistics,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        super().__init__(slots)
        self._pool = InstancePool(slots, rate_limiter)
        self._stats = stats
        self._waiting = 0  # requests waiting for a free instance

    def pending_count(self) -> int:
        return self._waiting

    async def submit(
        self, request: InferenceRequest, batch_size: int, output_names: Sequence[str]
    ) -> Completion:
        queued_ns = now_ns()
        self._waiting += 1
        try:
            slot = await self._pool.acquire()
        finally:
            self._waiting -= 1
        times = ExecutionTimes()
        try:
            start_ns = now_ns()
            (result,) = await slot.instance.execute([request], output_names, times)
        finally:
            self._pool.release(slot)
        fill_times(times, start_ns, now_ns())
        self._stats.record_execution(max(1, batch_size), ComputeDurations.from_times(times))
        return Completion(result, start_ns - queued_ns, times)
