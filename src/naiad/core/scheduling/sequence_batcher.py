"""The sequence batcher (``sequence_batching { ... }``): stateful models, one sequence per slot.

Each instance has sequence slots: ``max_batch_size`` of them with the ``direct``
strategy (1 when the model does not batch), ``max_candidate_sequences`` with ``oldest``.
A sequence (a correlation id, from the ``sequence_id`` request parameter) is bound to
one slot from its START request until its END request has run, or until it stays idle
longer than ``max_sequence_idle_microseconds`` (default 1 s); sequences that find no
free slot wait in a backlog, in arrival order. Each instance runs one batch at a time,
built from the next request of each of its slots (so a sequence's requests run in
order, one at a time): with ``direct``, once every occupied slot has a request or
``max_queue_delay_microseconds`` passed; with ``oldest``, the oldest requests first,
sent when the batch reaches ``max_batch_size`` or the largest ``preferred_batch_size``
or when the oldest has waited ``max_queue_delay_microseconds``.

Unlike Triton, which pads a direct batch up to its highest used slot with READY=0
entries, only slots that have a request are sent (every request sent is READY), so
models never compute padding. Control inputs and implicit state come from
:mod:`sequence_controls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import now_ns
from naiad.core.scheduling.base import Completion, InstanceSlot, Scheduler, run_batch
from naiad.core.scheduling.sequence_controls import SequenceControls, SequenceId
from naiad.core.statistics import ComputeDurations, ModelStatistics
from naiad.errors import CancelledError, InvalidArgumentError, NaiadError
from naiad.inference import InferenceRequest

logger = logging.getLogger("naiad.sequence")

DEFAULT_IDLE_US = 1_000_000


@dataclass(eq=False, slots=True)
class _Request:
    request: InferenceRequest
    output_names: Sequence[str]
    start: bool
    end: bool
    future: asyncio.Future[Completion]
    enqueued_ns: int


@dataclass(eq=False, slots=True)
class _Sequence:
    id: SequenceId
    queue: deque[_Request] = field(default_factory=deque)
    lane: _Lane | None = None
    busy: bool = False  # a request of it is executing
    last_ns: int = 0
    state: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class _Lane:
    """One instance with its sequence slots."""

    slot: InstanceSlot
    capacity: int
    sequences: list[_Sequence] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class SequenceBatcher(Scheduler):
    def __init__(
        self,
        slots: Sequence[InstanceSlot],
        config: mc.ModelConfig,
        stats: ModelStatistics,
        model_dir: Path | None = None,
    ) -> None:
        super().__init__(slots)
        batching = config.sequence_batching
        self._name = config.name
        self._stats = stats
        self._controls = SequenceControls(config, model_dir)
        self._oldest = batching.WhichOneof("strategy_choice") == "oldest"
        self._max_batch_size = max(1, config.max_batch_size)
        if self._oldest:
            strategy = batching.oldest
            self._capacity = max(1, strategy.max_candidate_sequences)
            self._preferred = sorted(
                {s for s in strategy.preferred_batch_size if 0 < s <= self._max_batch_size}
            )
            self._max_delay_ns = strategy.max_queue_delay_microseconds * 1000
            self._preserve_ordering = strategy.preserve_ordering
        else:
            self._capacity = self._max_batch_size
            self._preferred = []
            self._max_delay_ns = batching.direct.max_queue_delay_microseconds * 1000
            self._preserve_ordering = False
        idle_us = batching.max_sequence_idle_microseconds or DEFAULT_IDLE_US
        self._idle_ns = idle_us * 1000
        self._state_outputs = [spec.output_name for spec in self._controls.states]
        self._lanes = [_Lane(slot, self._capacity) for slot in slots]
        self._active: dict[SequenceId, _Sequence] = {}  # ids whose END has not arrived
        self._backlog: deque[_Sequence] = deque()
        self._in_order: deque[tuple[_Request, list[Completion | NaiadError]]] = deque()
        self._reaper: asyncio.Task[None] | None = None
        self._waiting = 0

    @property
    def control_names(self) -> frozenset[str]:
        return self._controls.names

    # -- submission ---------------------------------------------------------------

    def _sequence_params(
        self, request: InferenceRequest, batch_size: int
    ) -> tuple[SequenceId, bool, bool]:
        if batch_size > 1:
            raise InvalidArgumentError(
                f"inference request to model '{self._name}' must specify batch-size 1 due to "
                "requirements of sequence batcher"
            )
        params = request.parameters
        sequence_id = params.get("sequence_id", 0)
        if isinstance(sequence_id, bool) or not isinstance(sequence_id, int | str):
            raise InvalidArgumentError("sequence_id parameter must be an integer or a string")
        if sequence_id in (0, ""):
            raise InvalidArgumentError(
                f"inference request to model '{self._name}' must specify a non-zero or "
                "non-empty correlation ID"
            )
        self._controls.check_id(self._name, sequence_id)
        start, end = params.get("sequence_start", False), params.get("sequence_end", False)
        if not isinstance(start, bool) or not isinstance(end, bool):
            raise InvalidArgumentError("sequence_start and sequence_end must be booleans")
        return sequence_id, start, end

    async def submit(
        self, request: InferenceRequest, batch_size: int, output_names: Sequence[str]
    ) -> Completion:
        sequence_id, start, end = self._sequence_params(request, batch_size)
        loop = asyncio.get_running_loop()
        self._start_tasks(loop)
        sequence = self._active.get(sequence_id)
        if sequence is None:
            if not start:
                raise InvalidArgumentError(
                    f"inference request for sequence {sequence_id} to model '{self._name}' "
                    "must specify the START flag on the first request of the sequence"
                )
            sequence = _Sequence(sequence_id, last_ns=now_ns())
            self._active[sequence_id] = sequence
            self._bind(sequence)
        elif start:
            # Triton's rule: a START on a live id ends the old sequence early; the new
            # one continues in the same slot (its state resets at START).
            logger.warning(
                "sequence %s for model '%s' has a conflict: the previous sequence did not end "
                "before this sequence start",
                sequence_id,
                self._name,
            )
        if end:
            del self._active[sequence_id]  # a later request with this id needs START
        pending = _Request(request, output_names, start, end, loop.create_future(), now_ns())
        sequence.queue.append(pending)
        sequence.last_ns = pending.enqueued_ns
        outcome: list[Completion | NaiadError] = []
        if self._preserve_ordering:
            self._in_order.append((pending, outcome))
        self._waiting += 1
        if sequence.lane is not None:
            sequence.lane.wake.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            if pending in sequence.queue:  # never run a request nobody waits for
                sequence.queue.remove(pending)
                self._waiting -= 1
                self._finish(pending, CancelledError("request cancelled while queued"))
            raise

    def _bind(self, sequence: _Sequence) -> None:
        free = [lane for lane in self._lanes if len(lane.sequences) < lane.capacity]
        if not free:
            self._backlog.append(sequence)
            return
        # The lane with the most free slots spreads sequences over instances.
        lane = max(free, key=lambda lane: lane.capacity - len(lane.sequences))
        lane.sequences.append(sequence)
        sequence.lane = lane
        sequence.state = {}
        lane.wake.set()

    def _release(self, sequence: _Sequence) -> None:
        """Free the sequence's slot and give it to the oldest backlogged sequence."""
        lane = sequence.lane
        if lane is None:
            return
        lane.sequences.remove(sequence)
        sequence.lane = None
        sequence.state = {}
        if self._backlog:
            self._bind(self._backlog.popleft())

    # -- batching -----------------------------------------------------------------

    def _start_tasks(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._reaper is not None:
            return
        self._reaper = loop.create_task(self._reap(), name=f"sequence-reaper-{self._name}")
        for lane in self._lanes:
            self._start_lane(lane, loop)

    def _start_lane(self, lane: _Lane, loop: asyncio.AbstractEventLoop) -> None:
        lane.wake = asyncio.Event()
        lane.task = loop.create_task(self._lane_loop(lane), name=f"sequence-{self._name}")

    async def _reap(self) -> None:
        """End sequences idle for longer than ``max_sequence_idle_microseconds``."""
        while True:
            await asyncio.sleep(max(self._idle_ns / 4e9, 0.001))
            now = now_ns()
            for lane in self._lanes:
                for sequence in list(lane.sequences):
                    if sequence.busy or sequence.queue or now - sequence.last_ns < self._idle_ns:
                        continue
                    logger.info("sequence %s of model '%s' timed out", sequence.id, self._name)
                    if self._active.get(sequence.id) is sequence:
                        del self._active[sequence.id]
                    self._release(sequence)

    def _ready(self, lane: _Lane) -> list[_Sequence]:
        ready = [s for s in lane.sequences if s.queue and not s.busy]
        ready.sort(key=lambda s: s.queue[0].enqueued_ns)
        if len(ready) > 1:
            # Requests are stacked into one batch, so only equal shapes can share it.
            key = _shape_key(ready[0].queue[0].request)
            ready = [s for s in ready if _shape_key(s.queue[0].request) == key]
        return ready[: self._max_batch_size]

    async def _next_batch(self, lane: _Lane) -> list[_Sequence]:
        while True:
            ready = self._ready(lane)
            if not ready:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            waited_ns = now_ns() - ready[0].queue[0].enqueued_ns
            if self._oldest:
                full = len(ready) >= self._max_batch_size or (
                    bool(self._preferred) and len(ready) >= self._preferred[-1]
                )
                if not full and waited_ns >= self._max_delay_ns and self._preferred:
                    fitting = [size for size in self._preferred if size <= len(ready)]
                    ready = ready[: fitting[-1]] if fitting else ready
            else:
                full = len(ready) >= min(len(lane.sequences), self._max_batch_size)
            if full or waited_ns >= self._max_delay_ns:
                return ready
            lane.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), (self._max_delay_ns - waited_ns) / 1e9)

    async def _lane_loop(self, lane: _Lane) -> None:
        while True:
            sequences = await self._next_batch(lane)
            batch = [sequence.queue.popleft() for sequence in sequences]
            self._waiting -= len(batch)
            for sequence in sequences:
                sequence.busy = True
            try:
                await self._execute(lane, sequences, batch)
            finally:
                now = now_ns()
                for sequence, pending in zip(sequences, batch, strict=True):
                    sequence.busy = False
                    sequence.last_ns = now
                    if pending.end and self._active.get(sequence.id) is not sequence:
                        self._release(sequence)

    async def _execute(
        self, lane: _Lane, sequences: list[_Sequence], batch: list[_Request]
    ) -> None:
        requests = [
            self._controls.augment(p.request, s.id, p.start, p.end, s.state)
            for s, p in zip(sequences, batch, strict=True)
        ]
        names = list(
            dict.fromkeys([n for p in batch for n in p.output_names] + self._state_outputs)
        )
        run = await run_batch(lane.slot.instance, requests, names, self._name)
        times, start_ns, results = run.times, run.start_ns, run.results
        self._stats.record_execution(len(batch), ComputeDurations.from_times(times))
        for sequence, pending, result in zip(sequences, batch, results, strict=True):
            if isinstance(result, dict):
                result = dict(result)
                sequence.state = self._controls.take_state(result)
                completion: Completion | NaiadError = Completion(
                    result, start_ns - pending.enqueued_ns, times
                )
            else:
                completion = result
            self._finish(pending, completion)

    def _finish(self, pending: _Request, result: Completion | NaiadError) -> None:
        if not self._preserve_ordering:
            _resolve(pending, result)
            return
        for queued, slot in self._in_order:
            if queued is pending:
                slot.append(result)
        while self._in_order and self._in_order[0][1]:
            head, (head_result, *_) = self._in_order.popleft()
            _resolve(head, head_result)

    # -- lifecycle ----------------------------------------------------------------

    def pending_count(self) -> int:
        return self._waiting

    def add_slots(self, slots: Sequence[InstanceSlot]) -> None:
        for slot in slots:
            self.slots.append(slot)
            lane = _Lane(slot, self._capacity)
            self._lanes.append(lane)
            if self._reaper is not None:
                self._start_lane(lane, asyncio.get_running_loop())
        while self._backlog and any(len(x.sequences) < x.capacity for x in self._lanes):
            self._bind(self._backlog.popleft())

    async def remove_slots(self, count: int) -> list[InstanceSlot]:
        """Take ``count`` instances out of service once they hold no sequence."""
        removed: list[InstanceSlot] = []
        while len(removed) < count:
            idle = [lane for lane in self._lanes if not lane.sequences]
            if not idle:
                await asyncio.sleep(self._idle_ns / 4e9)
                continue
            lane = idle[-1]
            self._lanes.remove(lane)
            if lane.task is not None:
                lane.task.cancel()
            self.slots.remove(lane.slot)
            removed.append(lane.slot)
        return removed

    def close(self) -> None:
        for task in [self._reaper, *(lane.task for lane in self._lanes)]:
            if task is not None:
                task.cancel()
        super().close()


def _shape_key(request: InferenceRequest) -> tuple[object, ...]:
    return tuple((tensor.name, tensor.shape) for tensor in request.inputs)


def _resolve(pending: _Request, result: Completion | NaiadError) -> None:
    if pending.future.done():
        return
    if isinstance(result, NaiadError):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)
