"""The default scheduler: each request runs, unbatched, on the next free instance.

Requests get instances in arrival order and no instance runs more requests at once than
it may hold.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from naiad.backends.base import ExecutionTimes, now_ns
from naiad.core.scheduling.base import Completion, InstanceSlot, Scheduler, fill_times
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.core.statistics import ComputeDurations, ModelStatistics
from naiad.inference import InferenceRequest


class InstancePool:
    """Free instance entries handed to waiting requests strictly first come, first served,
    with the rate limiter (if any) in front of them.

    An instance has one entry per request it may hold at a time: ``max_concurrency``,
    or, when ``pipelined``, its ``pipeline_depth`` if larger (handing a threaded instance
    its next request while it still runs the last one). Pipelining is off under a rate
    limiter, whose resources are held per execution, not per queued request.

    A freed entry goes straight to the oldest waiter. (An ``asyncio.Queue`` only wakes that
    waiter: a request arriving before it runs takes the entry, and the woken one goes to
    the back of the line, which under load left some clients waiting tens of
    milliseconds while others were served at once.)
    """

    def __init__(
        self,
        slots: Sequence[InstanceSlot],
        rate_limiter: RateLimiter | None,
        pipelined: bool = False,
    ) -> None:
        self._slots = list(slots)
        self._rate_limiter = rate_limiter
        self._pipelined = pipelined and rate_limiter is None
        # Each instance's entries interleaved, so that load spreads over instances.
        self._idle: deque[InstanceSlot] = deque()
        rounds = max((self._depth(slot) for slot in self._slots), default=1)
        for round_ in range(rounds):
            self._idle.extend(slot for slot in self._slots if round_ < self._depth(slot))
        self._waiters: deque[asyncio.Future[InstanceSlot]] = deque()
        # id(slot) -> requests it holds now, and who waits for it to drain (removal).
        self._held: dict[int, int] = {}
        self._drained: dict[int, asyncio.Future[None]] = {}

    def _depth(self, slot: InstanceSlot) -> int:
        depth = slot.instance.max_concurrency
        if self._pipelined:
            depth = max(depth, slot.instance.pipeline_depth)
        return max(1, depth)

    def _serving(self, slot: InstanceSlot) -> bool:
        return any(slot is other for other in self._slots)

    def _take_idle(self) -> InstanceSlot | None:
        """A free entry, unless someone is already waiting for one (no overtaking)."""
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()  # cancelled waiters
        if self._waiters:
            return None
        while self._idle:
            slot = self._idle.popleft()
            if self._serving(slot):
                return slot
            # else: a leftover entry of an instance taken out of service
        return None

    def _free(self, slot: InstanceSlot) -> None:
        """An entry of a serving instance is free: to the oldest waiter, else idle."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._idle.append(slot)

    async def acquire(self) -> InstanceSlot:
        slot = self._take_idle()
        if slot is None:
            waiter: asyncio.Future[InstanceSlot] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                slot = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._free(waiter.result())  # handed an entry, cancelled before use
                raise
        if self._rate_limiter is not None:
            try:
                await self._rate_limiter.acquire(slot.resources, slot.priority)
            except BaseException:
                self._free(slot)
                raise
        self._held[id(slot)] = self._held.get(id(slot), 0) + 1
        return slot

    def release(self, slot: InstanceSlot) -> None:
        if self._rate_limiter is not None:
            self._rate_limiter.release(slot.resources)
        held = self._held.get(id(slot), 1) - 1
        if held > 0:
            self._held[id(slot)] = held
        else:
            self._held.pop(id(slot), None)
            drained = self._drained.pop(id(slot), None)
            if drained is not None and not drained.done():
                drained.set_result(None)
        if self._serving(slot):
            self._free(slot)

    def add(self, slot: InstanceSlot) -> None:
        self._slots.append(slot)
        for _ in range(self._depth(slot)):
            self._free(slot)

    async def remove(self, count: int) -> list[InstanceSlot]:
        """Take ``count`` instances out of service, each once it holds no request."""
        removed: list[InstanceSlot] = []
        for _ in range(count):
            slot = await self.acquire()
            self._slots.remove(slot)
            self.release(slot)  # drops the entry: the instance is out of service now
            if self._held.get(id(slot)):
                drained = asyncio.get_running_loop().create_future()
                self._drained[id(slot)] = drained
                await drained
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
        self._pool = InstancePool(slots, rate_limiter, pipelined=True)
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
        # A pipelined request starts when its instance starts it, not when it was handed over.
        return Completion(result, max(start_ns, times.compute_start_ns) - queued_ns, times)
