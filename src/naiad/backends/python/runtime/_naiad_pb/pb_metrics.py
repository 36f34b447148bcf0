"""``pb_utils.MetricFamily`` and ``Metric``: custom metrics kept inside the worker.

They count, set and observe as Triton's do, with Triton's checks, and ``value()`` reads
them back. Every change sets ``changed``; the worker's metrics thread then sends a
``snapshot()`` of all families to the server, which exports it on ``/metrics``.
"""

from __future__ import annotations

import bisect
import math
import threading
from typing import Any, ClassVar

from .errors import TritonModelException

_families: dict[str, MetricFamily] = {}
_lock = threading.Lock()
# Set by every change; the worker's metrics thread waits on it (no polling when idle).
changed = threading.Event()
_KIND_NAMES = ("counter", "gauge", "histogram")


class Metric:
    """One labelled series of a family."""

    def __init__(self, family: MetricFamily, labels: dict[str, str], buckets: list[float] | None):
        self._family = family
        self._labels = dict(labels)
        self._value = 0.0
        self._buckets = buckets
        self._counts = [0] * (len(buckets) + 1) if buckets is not None else []
        self._sum = 0.0
        self._lock = threading.Lock()

    def increment(self, value: float) -> None:
        if self._family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("Incrementing a histogram metric is not supported")
        if self._family.kind == MetricFamily.COUNTER and value < 0:
            raise TritonModelException("Counter metrics can only be incremented by >= 0")
        with self._lock:
            self._value += value
        changed.set()

    def set(self, value: float) -> None:
        if self._family.kind != MetricFamily.GAUGE:
            raise TritonModelException("Only gauge metrics can be set")
        with self._lock:
            self._value = float(value)
        changed.set()

    def observe(self, value: float) -> None:
        if self._family.kind != MetricFamily.HISTOGRAM or self._buckets is None:
            raise TritonModelException("Only histogram metrics can observe values")
        with self._lock:
            self._counts[bisect.bisect_left(self._buckets, value)] += 1
            self._sum += value
        changed.set()

    def value(self) -> float:
        if self._family.kind == MetricFamily.HISTOGRAM:
            raise TritonModelException("Getting the value of a histogram metric is not supported")
        return self._value


class MetricFamily:
    COUNTER: ClassVar[int] = 0
    GAUGE: ClassVar[int] = 1
    HISTOGRAM: ClassVar[int] = 2

    def __new__(cls, name: str, description: str, kind: int) -> MetricFamily:
        with _lock:
            existing = _families.get(name)
            if existing is not None:
                if existing.kind != kind or existing.description != description:
                    raise TritonModelException(
                        f"metric family '{name}' already exists with another kind or description"
                    )
                return existing
            family = super().__new__(cls)
            family.name = name
            family.description = description
            family.kind = kind
            family._metrics = {}
            _families[name] = family
            return family

    def __init__(self, name: str, description: str, kind: int) -> None:
        if kind not in (self.COUNTER, self.GAUGE, self.HISTOGRAM):
            raise TritonModelException(f"unknown metric kind {kind}")

    name: str
    description: str
    kind: int
    _metrics: dict[tuple[tuple[str, str], ...], Metric]

    def Metric(
        self, labels: dict[str, str] | None = None, buckets: list[float] | None = None
    ) -> Metric:
        labels = labels or {}
        if self.kind == self.HISTOGRAM:
            if buckets is None:
                raise TritonModelException("histogram metrics need buckets")
            if sorted(buckets) != list(buckets) or any(math.isnan(b) for b in buckets):
                raise TritonModelException("histogram buckets must be sorted numbers")
        elif buckets is not None:
            raise TritonModelException("only histogram metrics take buckets")
        key = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        with _lock:
            metric = self._metrics.get(key)
            if metric is None:
                metric = Metric(self, dict(key), list(buckets) if buckets is not None else None)
                self._metrics[key] = metric
                changed.set()  # a new series is exported at 0, as in Triton
            return metric

    def _snapshot(self) -> list[Any]:
        samples = []
        for metric in list(self._metrics.values()):
            with metric._lock:
                samples.append(
                    [
                        metric._labels,
                        metric._value,
                        metric._buckets or [],
                        list(metric._counts),
                        metric._sum,
                    ]
                )
        return [self.name, self.description, _KIND_NAMES[self.kind], samples]


def families() -> dict[str, Any]:
    """Every family created in this worker (what an exporter will read)."""
    return dict(_families)


def snapshot() -> list[Any]:
    """Every family and series as JSON values: ``[name, description, kind, samples]``,
    each sample ``[labels, value, buckets, per-bucket counts (+Inf last), sum]``."""
    with _lock:
        return [family._snapshot() for family in _families.values()]
