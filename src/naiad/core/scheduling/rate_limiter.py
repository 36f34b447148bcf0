"""The rate limiter (``--rate-limit=execution_count``): instances execute only while they
hold the resources their ``instance_group.rate_limiter`` names.

Resources form one pool per server. A resource's count comes from
``--rate-limit-resource``, or else is the largest count any single instance asks for
(as Triton does). Waiters are served by ``priority`` (lower value first), then in
arrival order; only the head of the line may take resources, so a large request is
never starved by a stream of small ones.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass, field

from naiad.errors import ModelLoadError


@dataclass(order=True, slots=True)
class _Waiter:
    priority: int
    seq: int
    resources: dict[str, int] = field(compare=False)
    future: asyncio.Future[None] = field(compare=False)


class RateLimiter:
    def __init__(self, explicit: dict[str, int] | None = None) -> None:
        self._explicit = dict(explicit or {})
        self._capacity: dict[str, int] = dict(self._explicit)
        self._in_use: dict[str, int] = {}
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()

    def register(self, resources: dict[str, int], model_name: str) -> None:
        """Account for an instance's needs at load time (sizing implicit resources)."""
        for name, count in resources.items():
            if name in self._explicit:
                if count > self._explicit[name]:
                    raise ModelLoadError(
                        f"model '{model_name}' needs {count} of rate-limiter resource '{name}', "
                        f"but --rate-limit-resource allows only {self._explicit[name]}"
                    )
            else:
                self._capacity[name] = max(self._capacity.get(name, 0), count)

    def capacity(self) -> dict[str, int]:
        return dict(self._capacity)

    def _fits(self, resources: dict[str, int]) -> bool:
        return all(
            self._in_use.get(name, 0) + count <= self._capacity.get(name, 0)
            for name, count in resources.items()
        )

    def _take(self, resources: dict[str, int]) -> None:
        for name, count in resources.items():
            self._in_use[name] = self._in_use.get(name, 0) + count

    async def acquire(self, resources: dict[str, int], priority: int) -> None:
        if not resources:
            return
        if not self._waiters and self._fits(resources):
            self._take(resources)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, _Waiter(priority, next(self._seq), resources, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(resources)  # granted just as we were cancelled
            else:
                self._waiters = [w for w in self._waiters if w.future is not future]
                heapq.heapify(self._waiters)
            raise

    def release(self, resources: dict[str, int]) -> None:
        for name, count in resources.items():
            self._in_use[name] = self._in_use.get(name, 0) - count
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                heapq.heappop(self._waiters)
                continue
            if not self._fits(head.resources):
                break
            heapq.heappop(self._waiters)
            self._take(head.resources)
            head.future.set_result(None)
