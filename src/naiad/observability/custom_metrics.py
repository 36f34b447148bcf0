"""Custom metric families from outside the core, exported on the same ``/metrics``.

This is the hook for python models' ``pb_utils.MetricFamily`` (and any other producer in
the server process). A producer registers a *source*: a callable the metrics endpoint
calls at every scrape, on the event loop, that returns the families it currently holds.
A source must be quick and must not block: return the latest snapshot you have (for a
python model, the values its worker process last reported).

    from naiad.observability.custom_metrics import CustomFamily, CustomSample, register_source

    def snapshot() -> list[CustomFamily]:
        return [CustomFamily("requests_seen", "Requests seen by my model", "counter",
                             [CustomSample({"model": "m", "version": "1"}, value=42)])]

    unregister = register_source(snapshot)   # call unregister() when the model unloads

Families of the same name from several sources (say, one per model instance) merge:
counters and histograms add up per label set, a gauge shows the last source's value.
A family whose name or kind clashes with another is dropped, with a warning, once.

There is one registry per server process (a process serves one Naiad server).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger("naiad.metrics")

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class CustomSample:
    """One labelled series: ``value`` for counters and gauges, buckets for histograms."""

    labels: Mapping[str, str]
    value: float = 0.0
    # Histograms: upper bounds (without +Inf), per-bucket (not cumulative) counts with one
    # more entry for +Inf, and the sum of observations.
    buckets: Sequence[float] = ()
    bucket_counts: Sequence[int] = ()
    sum: float = 0.0


@dataclass(frozen=True, slots=True)
class CustomFamily:
    name: str
    description: str
    kind: Kind
    samples: Sequence[CustomSample] = field(default_factory=tuple)


CustomSource = Callable[[], Iterable[CustomFamily]]


class CustomMetrics:
    def __init__(self) -> None:
        self._sources: list[CustomSource] = []
        self._warned: set[str] = set()

    def register_source(self, source: CustomSource) -> Callable[[], None]:
        """Export ``source``'s families from now on; returns the function that stops it."""
        self._sources.append(source)

        def unregister() -> None:
            if source in self._sources:
                self._sources.remove(source)

        return unregister

    def collect(self, reserved: Iterable[str] = ()) -> list[CustomFamily]:
        """Every source's families, merged by name (a failing source is skipped)."""
        taken = set(reserved)
        merged: dict[str, tuple[CustomFamily, dict[tuple[tuple[str, str], ...], CustomSample]]] = {}
        for source in list(self._sources):
            try:
                families = list(source())
            except Exception:
                logger.exception("custom metrics source %r failed", source)
                continue
            for family in families:
                if family.name in taken:
                    self._warn(family.name, "clashes with a built-in metric family")
                    continue
                entry = merged.get(family.name)
                if entry is None:
                    entry = merged[family.name] = (family, {})
                elif entry[0].kind != family.kind:
                    self._warn(family.name, "is reported with two different kinds")
                    continue
                for sample in family.samples:
                    key = tuple(sorted(sample.labels.items()))
                    entry[1][key] = _merge(family.kind, entry[1].get(key), sample)
        return [
            CustomFamily(family.name, family.description, family.kind, list(samples.values()))
            for family, samples in merged.values()
        ]

    def _warn(self, name: str, why: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            logger.warning("custom metric family '%s' %s; it is not exported", name, why)


def _merge(kind: Kind, old: CustomSample | None, new: CustomSample) -> CustomSample:
    if old is None or kind == "gauge":
        return new
    if kind == "counter":
        return CustomSample(new.labels, value=old.value + new.value)
    if list(old.buckets) != list(new.buckets):
        return new  # instances disagree on buckets: keep the latest rather than mix them
    counts = [a + b for a, b in zip(old.bucket_counts, new.bucket_counts, strict=False)]
    return CustomSample(
        new.labels, buckets=new.buckets, bucket_counts=counts, sum=old.sum + new.sum
    )


def cumulative_buckets(sample: CustomSample) -> list[tuple[float, int]]:
    total = 0
    result = []
    for bound, count in zip([*sample.buckets, math.inf], sample.bucket_counts, strict=False):
        total += count
        result.append((bound, total))
    return result


_REGISTRY = CustomMetrics()


def default_registry() -> CustomMetrics:
    return _REGISTRY


def register_source(source: CustomSource) -> Callable[[], None]:
    """Export the families ``source`` returns on ``/metrics``; see the module docstring."""
    return _REGISTRY.register_source(source)
