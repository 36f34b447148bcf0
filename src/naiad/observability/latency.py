"""Per-request latency observations: sliding-window quantiles and histograms.

Counts and sums are exact (they come from the core's statistics); what needs the single
observations -- summary quantiles, histogram buckets, the dashboard's live p50/p99 --
is recorded here by one observer the core calls after each successful request. The
recorder of a model version lives in that version's statistics object, so it is found
in O(1) and goes away with the version.

Windows keep at most ``cap`` observations per age bucket (a uniform reservoir sample
beyond that), so memory and scrape cost stay bounded at any request rate.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from naiad.core.statistics import ComputeDurations

RECORDER_KEY = "naiad.observability"

# The summary families, their HELP texts (Triton's), and which duration each observes.
SUMMARY_FAMILIES: tuple[tuple[str, str, str], ...] = (
    (
        "nv_inference_request_summary_us",
        "Summary of inference request duration in microseconds (includes cached requests)",
        "request",
    ),
    (
        "nv_inference_queue_summary_us",
        "Summary of inference queuing duration in microseconds (includes cached requests)",
        "queue",
    ),
    (
        "nv_inference_compute_input_summary_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        "compute_input",
    ),
    (
        "nv_inference_compute_infer_summary_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        "compute_infer",
    ),
    (
        "nv_inference_compute_output_summary_us",
        "Cumulative inference compute output duration in microseconds (does not include "
        "cached requests)",
        "compute_output",
    ),
)
FIRST_RESPONSE_HISTOGRAM = "nv_inference_first_response_histogram_ms"
# The dashboard keeps this many of the latest requests (its window may hold fewer).
LIVE_REQUESTS = 2048
DEFAULT_HISTOGRAM_BUCKETS_MS = (100.0, 500.0, 2000.0, 5000.0)  # Triton's defaults


class SlidingWindow:
    """Observations of the last ``max_age_s`` seconds, in ``age_buckets`` rotating buckets."""

    __slots__ = (
        "_cap",
        "_count",
        "_current",
        "_epoch",
        "_epochs",
        "_seen",
        "_slot",
        "_values",
        "_width",
    )

    def __init__(self, max_age_s: float, age_buckets: int = 5, cap: int = 1024) -> None:
        self._width = max_age_s / age_buckets
        self._cap = cap
        self._epochs = [-1] * age_buckets
        self._values: list[list[float]] = [[] for _ in range(age_buckets)]
        self._seen = [0] * age_buckets
        # The bucket being filled, kept at hand: observe() is on the request path.
        self._epoch = -1
        self._slot = 0
        self._current = self._values[0]
        self._count = 0

    def _rotate(self, epoch: int) -> None:
        self._seen[self._slot] = self._count
        slot = epoch % len(self._epochs)
        self._epochs[slot] = epoch
        self._values[slot] = self._current = []
        self._seen[slot] = self._count = 0
        self._epoch, self._slot = epoch, slot

    def observe(self, value: float, now: float) -> None:
        epoch = int(now / self._width)
        if epoch != self._epoch:
            self._rotate(epoch)
        self._count += 1
        current = self._current
        if len(current) < self._cap:
            current.append(value)
        else:  # reservoir sampling keeps the bucket a uniform sample of what it saw
            index = int(random.random() * self._count)
            if index < self._cap:
                current[index] = value

    def _live(self, now: float) -> list[int]:
        self._seen[self._slot] = self._count
        epoch = int(now / self._width)
        oldest = epoch - len(self._epochs)
        return [s for s, e in enumerate(self._epochs) if oldest < e <= epoch and self._values[s]]

    def values(self, now: float) -> list[float]:
        return [v for slot in self._live(now) for v in self._values[slot]]

    def quantiles(self, qs: Sequence[float], now: float) -> list[float]:
        """Rank-based quantiles (NaN when the window is empty, as Prometheus reports)."""
        slots = self._live(now)
        if not slots:
            return [math.nan] * len(qs)
        values = np.concatenate([np.asarray(self._values[s], dtype=np.float64) for s in slots])
        # A capped bucket stands for more observations than it keeps: weight its samples.
        weights = np.concatenate(
            [np.full(len(self._values[s]), self._seen[s] / len(self._values[s])) for s in slots]
        )
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(weights[order])
        total = cumulative[-1]
        sorted_values = values[order]
        result = []
        for q in qs:
            index = int(np.searchsorted(cumulative, q * total, side="left"))
            result.append(float(sorted_values[min(index, len(sorted_values) - 1)]))
        return result


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = sorted(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        total = 0
        buckets = []
        for bound, count in zip([*self.bounds, math.inf], self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


class LiveRing:
    """The latest requests' times and durations in three flat arrays (24 bytes a request)."""

    __slots__ = ("_next", "_queues", "_requests", "_times")

    def __init__(self, size: int) -> None:
        self._times = array("d", [-math.inf]) * size
        self._requests = array("d", [0.0]) * size
        self._queues = array("d", [0.0]) * size
        self._next = 0

    def append(self, now: float, request_ns: int, queue_ns: int) -> None:
        index = self._next
        self._times[index] = now
        self._requests[index] = request_ns
        self._queues[index] = queue_ns
        self._next = index + 1 if index + 1 < len(self._times) else 0

    def since(self, start: float) -> tuple[list[float], list[float]]:
        """Request and queue durations (ms) of the requests at or after ``start``."""
        keep = [i for i, t in enumerate(self._times) if t >= start]
        return [self._requests[i] / 1e6 for i in keep], [self._queues[i] / 1e6 for i in keep]


@dataclass(slots=True)
class Summary:
    window: SlidingWindow
    count: int = 0
    sum: float = 0.0


@dataclass(frozen=True, slots=True)
class RecorderSettings:
    summaries: bool = False
    histograms: bool = False
    dashboard: bool = False
    summary_max_age_s: float = 60.0  # prometheus-cpp's default, as Triton's summaries


class ModelRecorder:
    """The observations of one model version."""

    __slots__ = ("histogram", "live", "summaries")

    def __init__(self, settings: RecorderSettings, histogram_buckets: Sequence[float]) -> None:
        self.summaries: tuple[Summary, ...] | None = None
        if settings.summaries:  # in SUMMARY_FAMILIES' order
            self.summaries = tuple(
                Summary(SlidingWindow(settings.summary_max_age_s)) for _ in SUMMARY_FAMILIES
            )
        self.histogram = Histogram(histogram_buckets) if settings.histograms else None
        # The dashboard's recent requests.
        self.live = LiveRing(LIVE_REQUESTS) if settings.dashboard else None

    def observe(self, request_ns: int, queue_ns: int, compute: ComputeDurations) -> None:
        now = time.monotonic()
        if self.live is not None:
            self.live.append(now, request_ns, queue_ns)
        if self.histogram is not None:
            self.histogram.observe(request_ns / 1e6)
        if self.summaries is not None:
            durations = (
                request_ns,
                queue_ns,
                compute.input_ns,
                compute.infer_ns,
                compute.output_ns,
            )
            for summary, ns in zip(self.summaries, durations, strict=True):
                us = max(0, ns) // 1000
                summary.count += 1
                summary.sum += us
                summary.window.observe(us, now)

    def summary(self, kind: str) -> Summary | None:
        if self.summaries is None:
            return None
        return self.summaries[[k for _, _, k in SUMMARY_FAMILIES].index(kind)]

    def recent(self, window_s: float, now: float) -> tuple[list[float], list[float]]:
        """Request and queue durations (ms) of the requests of the last ``window_s`` seconds."""
        if self.live is None:
            return [], []
        return self.live.since(now - window_s)


def histogram_buckets(config: Any) -> list[float]:
    """Buckets from the config's ``model_metrics`` for the first-response histogram."""
    for control in config.model_metrics.metric_control:
        if control.metric_identifier.family == FIRST_RESPONSE_HISTOGRAM:
            buckets = list(control.histogram_options.buckets)
            if buckets:
                return buckets
    return list(DEFAULT_HISTOGRAM_BUCKETS_MS)


class Observer:
    """Called by the core after each successful request (``core.statistics`` hook)."""

    def __init__(self, settings: RecorderSettings) -> None:
        self.settings = settings

    def __call__(
        self, model: Any, batch_size: int, request_ns: int, queue_ns: int, compute: ComputeDurations
    ) -> None:
        state = model.stats.observer_state
        recorder = state.get(RECORDER_KEY)
        if recorder is None:
            recorder = state[RECORDER_KEY] = ModelRecorder(
                self.settings, histogram_buckets(model.config)
            )
        recorder.observe(request_ns, queue_ns, compute)


def recorder_of(model: Any) -> ModelRecorder | None:
    recorder = model.stats.observer_state.get(RECORDER_KEY)
    return recorder if isinstance(recorder, ModelRecorder) else None
