"""What every scheduler shares: instance slots, completions and the scheduler protocol."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from naiad.backends.base import ExecuteResult, ExecutionTimes, ModelInstance
from naiad.inference import InferenceRequest

if TYPE_CHECKING:
    from naiad.core.scheduling.default import InstancePool


@dataclass(frozen=True, slots=True)
class InstanceSlot:
    """An instance with what the rate limiter needs to know about its group."""

    instance: ModelInstance
    # Rate-limiter resources the instance holds while it executes: name -> count.
    resources: dict[str, int] = field(default_factory=dict)
    priority: int = 0


@dataclass(slots=True)
class Completion:
    """The outcome of one request, with the durations statistics need."""

    result: ExecuteResult
    queue_ns: int
    times: ExecutionTimes


class Scheduler(abc.ABC):
    def __init__(self, slots: Sequence[InstanceSlot]) -> None:
        self.slots = list(slots)
        self._pool: InstancePool

    def add_slots(self, slots: Sequence[InstanceSlot]) -> None:
        """Put new instances into service (scaling up in place)."""
        for slot in slots:
            self.slots.append(slot)
            self._pool.add(slot)

    async def remove_slots(self, count: int) -> list[InstanceSlot]:
        """Take ``count`` instances out of service once idle; the caller closes them."""
        removed = await self._pool.remove(count)
        for slot in removed:
            self.slots.remove(slot)
        return removed

    @property
    def instances(self) -> list[ModelInstance]:
        return [slot.instance for slot in self.slots]

    @abc.abstractmethod
    async def submit(
        self, request: InferenceRequest, batch_size: int, output_names: Sequence[str]
    ) -> Completion:
        """Run ``request`` (``batch_size`` 0 for models that do not batch)."""

    def pending_count(self) -> int:
        """Requests waiting to start executing (Triton's pending request count)."""
        return 0

    def close(self) -> None:
        for instance in self.instances:
            instance.close()
