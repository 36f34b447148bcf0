"""What every scheduler shares: instance slots, completions and the scheduler protocol."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from naiad.backends.base import ExecuteResult, ExecutionTimes, ModelInstance
from naiad.inference import InferenceRequest


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

    @property
    def instances(self) -> list[ModelInstance]:
        return [slot.instance for slot in self.slots]

    @abc.abstractmethod
    async def submit(
        self, request: InferenceRequest, batch_size: int, output_names: Sequence[str]
    ) -> Completion:
        """Run ``request`` (``batch_size`` 0 for models that do not batch)."""

    def close(self) -> None:
        for instance in self.instances:
            instance.close()
