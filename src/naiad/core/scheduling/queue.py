"""The dynamic batcher's queue: priority levels, queue policies and timeouts.

Each priority level (1 is highest) has a FIFO and a ``ModelQueuePolicy``:
``max_queue_size`` bounds it, and a request that waits past its timeout is either
rejected (REJECT) or moved behind every waiting request (DELAY). A request may lower
its timeout with the ``timeout`` parameter (µs) when ``allow_timeout_override`` is set.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import UnavailableError
from naiad.inference import InferenceRequest

REJECT = mc.ModelQueuePolicy.REJECT


@dataclass(eq=False, slots=True)
class Pending:
    """A request waiting in the queue; ``future`` gets its completion."""

    request: InferenceRequest
    batch_size: int
    output_names: Sequence[str]
    future: asyncio.Future[object]
    enqueued_ns: int
    level: int
    shape_key: tuple[object, ...]
    seq: int
    deadline_ns: int | None = None
    delayed: bool = False
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    # Set when the request is done but waits for earlier ones (preserve_ordering).
    outcome: object | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class LevelPolicy:
    timeout_action: int = REJECT
    default_timeout_us: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0

    @classmethod
    def from_proto(cls, policy: mc.ModelQueuePolicy) -> LevelPolicy:
        return cls(
            timeout_action=policy.timeout_action,
            default_timeout_us=policy.default_timeout_microseconds,
            allow_timeout_override=policy.allow_timeout_override,
            max_queue_size=policy.max_queue_size,
        )

    def timeout_us(self, requested_us: int) -> int:
        """The queue timeout that applies; a request may only lower the default."""
        lowers = self.default_timeout_us == 0 or requested_us < self.default_timeout_us
        if self.allow_timeout_override and requested_us > 0 and lowers:
            return requested_us
        return self.default_timeout_us


class PriorityQueue:
    def __init__(self, batching: mc.ModelDynamicBatching) -> None:
        self.levels = max(1, batching.priority_levels)
        self.default_level = batching.default_priority_level or 1
        default_policy = LevelPolicy.from_proto(batching.default_queue_policy)
        self.policies = {
            level: (
                LevelPolicy.from_proto(batching.priority_queue_policy[level])
                if level in batching.priority_queue_policy
                else default_policy
            )
            for level in range(1, self.levels + 1)
        }
        self._queues: dict[int, deque[Pending]] = {
            level: deque() for level in range(1, self.levels + 1)
        }
        self._delayed: deque[Pending] = deque()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values()) + len(self._delayed)

    def level_for(self, priority: object) -> int:
        """Triton: priority 0, or beyond the configured levels, means the default level."""
        valid = isinstance(priority, int) and not isinstance(priority, bool)
        if valid and 1 <= priority <= self.levels:  # type: ignore[operator]
            return priority  # type: ignore[return-value]
        return self.default_level

    def next_seq(self) -> int:
        return next(self._seq)

    def push(self, pending: Pending) -> None:
        policy = self.policies[pending.level]
        queue = self._queues[pending.level]
        if policy.max_queue_size and len(queue) >= policy.max_queue_size:
            raise UnavailableError("Exceeds maximum queue size")
        queue.append(pending)

    def timeout_us(self, pending: Pending, requested_us: int) -> int:
        return self.policies[pending.level].timeout_us(requested_us)

    def expire(self, pending: Pending) -> bool:
        """Apply the level's timeout action; True if the request was rejected."""
        queue = self._queues[pending.level]
        if pending not in queue:
            return False
        if self.policies[pending.level].timeout_action == REJECT:
            queue.remove(pending)
            return True
        queue.remove(pending)
        pending.delayed = True
        self._delayed.append(pending)
        return False

    def in_order(self) -> Iterator[Pending]:
        """Waiting requests by priority level, then arrival; delayed ones last."""
        for level in range(1, self.levels + 1):
            yield from self._queues[level]
        yield from self._delayed

    def remove(self, pending: Pending) -> None:
        if pending.delayed:
            self._delayed.remove(pending)
        else:
            self._queues[pending.level].remove(pending)
