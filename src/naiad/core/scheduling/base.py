"""What every scheduler shares: instance slots, completions and the scheduler protocol."""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from naiad.backends.base import ExecuteResult, ExecutionTimes, ModelInstance, now_ns
from naiad.errors import InternalError, NaiadError
from naiad.inference import InferenceRequest

logger = logging.getLogger("naiad.scheduler")

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


def fill_times(times: ExecutionTimes, start_ns: int, end_ns: int) -> None:
    """Backends that stamp nothing are charged the whole execution as inference."""
    if not times.compute_start_ns:
        times.compute_start_ns = start_ns
    if not times.compute_input_end_ns:
        times.compute_input_end_ns = times.compute_start_ns
    if not times.compute_end_ns:
        times.compute_end_ns = end_ns
    if not times.compute_output_start_ns:
        times.compute_output_start_ns = times.compute_end_ns


@dataclass(slots=True)
class BatchRun:
    """One execution of a batch: a result per request, and when it ran."""

    results: list[ExecuteResult]
    times: ExecutionTimes
    start_ns: int


async def run_batch(
    instance: ModelInstance,
    requests: Sequence[InferenceRequest],
    output_names: Sequence[str],
    model_name: str,
) -> BatchRun:
    """Execute a batch for a batching scheduler: failures become every request's result.

    A backend error fails the batch's requests, never the scheduler that runs them.
    """
    times = ExecutionTimes()
    start_ns = now_ns()
    results: list[ExecuteResult]
    try:
        results = await instance.execute(requests, output_names, times)
        if len(results) != len(requests):
            raise InternalError(
                f"model '{model_name}' returned {len(results)} results for {len(requests)} requests"
            )
    except NaiadError as exc:
        results = [exc] * len(requests)
    except Exception as exc:
        logger.exception("model '%s' failed executing a batch", model_name)
        results = [InternalError(f"{type(exc).__name__}: {exc}")] * len(requests)
    fill_times(times, start_ns, now_ns())
    return BatchRun(results, times, start_ns)


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
