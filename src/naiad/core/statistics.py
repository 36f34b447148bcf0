"""Per-model-version statistics with Triton's semantics (the statistics extension).

Everything is updated on the event loop thread, so counts stay exact without locks.
Durations are nanoseconds. ``inference_count`` counts batch elements of successful
requests; ``execution_count`` counts executions (batches); each request of a batch
is charged the batch's compute durations, as Triton does.

Failures are counted by reason (:data:`FAILURE_REASONS`). Observers in
:data:`SUCCESS_OBSERVERS` see each successful request's durations (the metrics
summaries and histograms, the dashboard); with none installed the hot path pays nothing
but an empty loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from naiad.backends.base import ExecutionTimes

# Why a request failed, as nv_inference_request_failure's "reason" label says it:
# Triton's REJECTED (refused by the scheduler's queue: full, or timed out), CANCELED,
# BACKEND (the model failed it) and OTHER, plus INVALID for requests refused before they
# reached the model (malformed, wrong shape or datatype...), which Triton does not count.
REJECTED = "REJECTED"
CANCELED = "CANCELED"
BACKEND = "BACKEND"
INVALID = "INVALID"
OTHER = "OTHER"
FAILURE_REASONS = (REJECTED, CANCELED, BACKEND, INVALID, OTHER)


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(0, ns)


@dataclass(slots=True)
class BatchStatistics:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ComputeDurations:
    """One execution's input, infer and output durations in ns."""

    input_ns: int
    infer_ns: int
    output_ns: int

    @classmethod
    def from_times(cls, times: ExecutionTimes) -> ComputeDurations:
        return cls(
            input_ns=times.compute_input_end_ns - times.compute_start_ns,
            infer_ns=times.compute_output_start_ns - times.compute_input_end_ns,
            output_ns=times.compute_end_ns - times.compute_output_start_ns,
        )


@dataclass(slots=True)
class ModelStatistics:
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    batch_stats: dict[int, BatchStatistics] = field(default_factory=dict)
    # Failed requests by reason (FAILURE_REASONS); they add up to fail.count.
    failures: dict[str, int] = field(default_factory=dict)
    # Monotonic time the version began loading, and how long loading took (None while
    # loading): nv_model_load_duration_secs.
    load_start_ns: int = field(default_factory=time.monotonic_ns)
    load_duration_s: float | None = None
    # State observers keep per version (latency windows), living as long as the counts.
    observer_state: dict[str, Any] = field(default_factory=dict)

    def mark_loaded(self) -> None:
        self.load_duration_s = (time.monotonic_ns() - self.load_start_ns) / 1e9

    def record_execution(self, batch_size: int, compute: ComputeDurations) -> None:
        self.execution_count += 1
        stats = self.batch_stats.get(batch_size)
        if stats is None:
            stats = self.batch_stats[batch_size] = BatchStatistics()
        stats.compute_input.add(compute.input_ns)
        stats.compute_infer.add(compute.infer_ns)
        stats.compute_output.add(compute.output_ns)

    def record_success(
        self, batch_size: int, request_ns: int, queue_ns: int, compute: ComputeDurations
    ) -> None:
        self.inference_count += batch_size
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.success.add(request_ns)
        self.queue.add(queue_ns)
        self.compute_input.add(compute.input_ns)
        self.compute_infer.add(compute.infer_ns)
        self.compute_output.add(compute.output_ns)

    def record_failure(self, request_ns: int, reason: str = OTHER) -> None:
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.fail.add(request_ns)
        self.failures[reason] = self.failures.get(reason, 0) + 1


# Called on the event loop after each successful request with the model version, the
# batch size, the request and queue durations (ns) and the compute durations. The server
# installs its observers at start-up and removes them at shutdown.
SuccessObserver = Callable[[Any, int, int, int, ComputeDurations], None]
SUCCESS_OBSERVERS: list[SuccessObserver] = []
