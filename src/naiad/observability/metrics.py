"""Triton's Prometheus metric families, read at scrape time from the core's statistics.

One source of truth: counters are the exact counts the statistics extension reports
(``core.statistics``), read when Prometheus scrapes, never incremented a second time.
Summaries and histograms need single observations; those come from the recorder the
core's success hook feeds (:mod:`.latency`). Everything, scrapes included, runs on the
event loop thread, so a scrape sees a consistent state without locks.

Names, labels (``model``, ``version``, ``reason``; ``metric_tags`` as ``_<tag>``) and HELP
texts are Triton's. ``nv_inference_request_failure`` counts every failed request to a
known model: Triton's reasons (REJECTED by the queue, CANCELED, BACKEND, OTHER) plus
INVALID for requests the server refused before they reached the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from naiad.core.statistics import FAILURE_REASONS
from naiad.observability.custom_metrics import CustomMetrics, cumulative_buckets
from naiad.observability.latency import FIRST_RESPONSE_HISTOGRAM, SUMMARY_FAMILIES, recorder_of
from naiad.observability.settings import MetricsSettings
from naiad.observability.system import SystemMetrics

COUNTERS: tuple[tuple[str, str], ...] = (
    ("nv_inference_request_success", "Number of successful inference requests, all batch sizes"),
    ("nv_inference_request_failure", "Number of failed inference requests, all batch sizes"),
    (
        "nv_inference_count",
        "Number of inferences performed (does not include cached requests)",
    ),
    (
        "nv_inference_exec_count",
        "Number of model executions performed (does not include cached requests)",
    ),
)
LATENCY_COUNTERS: tuple[tuple[str, str, str], ...] = (
    (
        "nv_inference_request_duration_us",
        "Cumulative inference request duration in microseconds (includes cached requests)",
        "success",
    ),
    (
        "nv_inference_queue_duration_us",
        "Cumulative inference queuing duration in microseconds (includes cached requests)",
        "queue",
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Cumulative compute input duration in microseconds (does not include cached requests)",
        "compute_input",
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Cumulative compute inference duration in microseconds (does not include cached requests)",
        "compute_infer",
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Cumulative inference compute output duration in microseconds (does not include "
        "cached requests)",
        "compute_output",
    ),
)
PENDING = (
    "nv_inference_pending_request_count",
    "Instantaneous number of pending requests awaiting execution per-model.",
)
LOAD_DURATION = ("nv_model_load_duration_secs", "Model load time in seconds")
HISTOGRAM_HELP = "Duration from request to first response in milliseconds"


def model_labels(model: Any) -> dict[str, str]:
    labels = {"model": model.name, "version": model.version_str}
    for key, value in sorted(model.config.metric_tags.items()):
        labels[f"_{key}"] = value  # Triton prefixes metric tags with "_"
    return labels


def builtin_family_names() -> set[str]:
    names = {name for name, _ in COUNTERS} | {name for name, _, _ in LATENCY_COUNTERS}
    names |= {name for name, _, _ in SUMMARY_FAMILIES} | {PENDING[0], LOAD_DURATION[0]}
    names |= {FIRST_RESPONSE_HISTOGRAM, "nv_cpu_utilization", "nv_cpu_memory_total_bytes"}
    return names | {"nv_cpu_memory_used_bytes"}


class TritonCollector(Collector):
    """Reads the core at scrape time; ``models`` returns the versions to report."""

    def __init__(
        self,
        models: Callable[[], Sequence[Any]],
        settings: MetricsSettings,
        system: SystemMetrics | None,
        custom: CustomMetrics,
    ) -> None:
        self._models = models
        self._settings = settings
        self._system = system
        self._custom = custom
        self._reserved = builtin_family_names()

    def collect(self) -> Iterator[Metric]:
        models = [(model, model_labels(model)) for model in self._models()]
        yield from self._counters(models)
        yield from self._gauges(models)
        if self._system is not None:
            yield from self._system_gauges(self._system)
        if self._settings.summary_latencies:
            yield from self._summaries(models)
        if self._settings.histogram_latencies:
            yield self._histogram(models)
        yield from self._custom_families()

    def _counters(self, models: list[tuple[Any, dict[str, str]]]) -> Iterator[Metric]:
        values: dict[str, Callable[[Any], int]] = {
            "nv_inference_request_success": lambda s: s.success.count,
            "nv_inference_count": lambda s: s.inference_count,
            "nv_inference_exec_count": lambda s: s.execution_count,
        }
        for name, help_text in COUNTERS:
            metric = Metric(name, help_text, "counter")
            for model, labels in models:
                if name == "nv_inference_request_failure":
                    for reason in FAILURE_REASONS:
                        count = model.stats.failures.get(reason, 0)
                        metric.add_sample(name, {**labels, "reason": reason}, count)
                else:
                    metric.add_sample(name, labels, values[name](model.stats))
            yield metric
        if not self._settings.counter_latencies:
            return
        for name, help_text, field in LATENCY_COUNTERS:
            metric = Metric(name, help_text, "counter")
            for model, labels in models:
                metric.add_sample(name, labels, getattr(model.stats, field).ns // 1000)
            yield metric

    def _gauges(self, models: list[tuple[Any, dict[str, str]]]) -> Iterator[Metric]:
        pending = Metric(PENDING[0], PENDING[1], "gauge")
        load = Metric(LOAD_DURATION[0], LOAD_DURATION[1], "gauge")
        for model, labels in models:
            scheduler = model.scheduler
            count = getattr(scheduler, "pending_count", None)
            pending.add_sample(PENDING[0], labels, count() if count is not None else 0)
            duration = model.stats.load_duration_s
            if duration is not None:
                load.add_sample(LOAD_DURATION[0], labels, duration)
        yield pending
        yield load

    def _system_gauges(self, system: SystemMetrics) -> Iterator[Metric]:
        for name, help_text, value in (
            ("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", system.cpu_utilization),
            (
                "nv_cpu_memory_total_bytes",
                "CPU total memory (RAM), in bytes",
                system.memory_total_bytes,
            ),
            (
                "nv_cpu_memory_used_bytes",
                "CPU used memory (RAM), in bytes",
                system.memory_used_bytes,
            ),
        ):
            metric = Metric(name, help_text, "gauge")
            metric.add_sample(name, {}, value)
            yield metric

    def _summaries(self, models: list[tuple[Any, dict[str, str]]]) -> Iterator[Metric]:
        now = time.monotonic()
        quantiles = [q for q, _ in self._settings.quantiles]
        for name, help_text, kind in SUMMARY_FAMILIES:
            metric = Metric(name, help_text, "summary")
            for model, labels in models:
                recorder = recorder_of(model)
                summary = recorder.summary(kind) if recorder is not None else None
                count = summary.count if summary else 0
                total = summary.sum if summary else 0.0
                values = summary.window.quantiles(quantiles, now) if summary else []
                metric.add_sample(f"{name}_count", labels, count)
                metric.add_sample(f"{name}_sum", labels, total)
                for quantile, value in zip(
                    quantiles, values or [math.nan] * len(quantiles), strict=True
                ):
                    metric.add_sample(name, {**labels, "quantile": _format(quantile)}, value)
            yield metric

    def _histogram(self, models: list[tuple[Any, dict[str, str]]]) -> Metric:
        name = FIRST_RESPONSE_HISTOGRAM
        metric = Metric(name, HISTOGRAM_HELP, "histogram")
        for model, labels in models:
            recorder = recorder_of(model)
            if recorder is None or recorder.histogram is None:
                continue  # no request yet: no series, as Triton creates it on first use
            histogram = recorder.histogram
            for bound, count in histogram.cumulative():
                metric.add_sample(f"{name}_bucket", {**labels, "le": _format(bound)}, count)
            metric.add_sample(f"{name}_count", labels, histogram.count)
            metric.add_sample(f"{name}_sum", labels, histogram.sum)
        return metric

    def _custom_families(self) -> Iterator[Metric]:
        for family in self._custom.collect(self._reserved):
            metric = Metric(family.name, family.description, family.kind)
            for sample in family.samples:
                labels = dict(sample.labels)
                if family.kind != "histogram":
                    metric.add_sample(family.name, labels, sample.value)
                    continue
                for bound, count in cumulative_buckets(sample):
                    bucket_labels = {**labels, "le": _format(bound)}
                    metric.add_sample(f"{family.name}_bucket", bucket_labels, count)
                metric.add_sample(f"{family.name}_count", labels, sum(sample.bucket_counts))
                metric.add_sample(f"{family.name}_sum", labels, sample.sum)
            yield metric


def _format(value: float) -> str:
    """Label values as Prometheus writes them: ``+Inf``, ``0.5``, ``100``."""
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
