"""The metrics collector and exposition: Triton's names, exact counts, summaries, histograms."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from tritonclient.grpc import model_config_pb2 as mc

from naiad.core.statistics import BACKEND, INVALID, ComputeDurations, ModelStatistics
from naiad.observability.custom_metrics import CustomFamily, CustomMetrics, CustomSample
from naiad.observability.latency import (
    Histogram,
    Observer,
    RecorderSettings,
    SlidingWindow,
    histogram_buckets,
)
from naiad.observability.metrics import TritonCollector
from naiad.observability.metrics_server import exposition
from naiad.observability.settings import MetricsSettings


@dataclass
class FakeScheduler:
    pending: int = 0

    def pending_count(self) -> int:
        return self.pending


@dataclass
class FakeModel:
    """What the collector reads of a ModelVersion."""

    name: str
    version: int = 1
    config: mc.ModelConfig = field(default_factory=mc.ModelConfig)
    stats: ModelStatistics = field(default_factory=ModelStatistics)
    scheduler: FakeScheduler = field(default_factory=FakeScheduler)

    @property
    def version_str(self) -> str:
        return str(self.version)


COMPUTE = ComputeDurations(input_ns=1_000, infer_ns=8_000, output_ns=1_000)


def _scrape(
    models: list[Any], settings: MetricsSettings, custom: CustomMetrics | None = None
) -> tuple[str, dict[str, Any]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TritonCollector(lambda: models, settings, None, custom or CustomMetrics()))
    text = exposition(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return text, families


def _serve(model: FakeModel, observer: Observer, count: int, request_ns: int = 2_000_000) -> None:
    for _ in range(count):
        model.stats.record_success(1, request_ns, 10_000, COMPUTE)
        observer(model, 1, request_ns, 10_000, COMPUTE)


def test_counters_are_the_exact_statistics_with_triton_names() -> None:
    model = FakeModel("simple")
    model.config.metric_tags["team"] = "vision"
    for _ in range(3):
        model.stats.record_success(2, 5_000, 1_000, COMPUTE)
    model.stats.record_failure(100, INVALID)
    model.stats.record_failure(100, BACKEND)
    model.stats.record_failure(100, BACKEND)
    model.scheduler.pending = 4
    model.stats.load_duration_s = 0.25
    text, families = _scrape([model], MetricsSettings())
    labels = {"model": "simple", "version": "1", "_team": "vision"}
    assert f"nv_inference_request_success{{{_labels(labels)}}} 3.0" in text
    failure = {
        s.labels["reason"]: s.value for s in families["nv_inference_request_failure"].samples
    }
    assert failure == {"REJECTED": 0, "CANCELED": 0, "BACKEND": 2, "INVALID": 1, "OTHER": 0}
    assert f"nv_inference_count{{{_labels(labels)}}} 6.0" in text
    assert f"nv_inference_exec_count{{{_labels(labels)}}} 0.0" in text  # no execution recorded
    assert f"nv_inference_request_duration_us{{{_labels(labels)}}} 15.0" in text
    assert f"nv_inference_compute_infer_duration_us{{{_labels(labels)}}} 24.0" in text
    assert f"nv_inference_pending_request_count{{{_labels(labels)}}} 4.0" in text
    assert f"nv_model_load_duration_secs{{{_labels(labels)}}} 0.25" in text
    # Triton's counters carry no _total, and their HELP/TYPE lines say so too.
    assert "# TYPE nv_inference_request_success counter" in text
    assert "_total" not in text
    assert "nv_inference_request_summary_us" not in text  # summaries are off by default


def _labels(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def test_counter_latencies_can_be_switched_off() -> None:
    text, _ = _scrape([FakeModel("m")], MetricsSettings(counter_latencies=False))
    assert "nv_inference_request_duration_us" not in text
    assert "nv_inference_request_success" in text


def test_summaries_count_every_success_and_report_quantiles() -> None:
    model = FakeModel("m")
    observer = Observer(RecorderSettings(summaries=True))
    _serve(model, observer, 5, request_ns=3_000_000)
    _, families = _scrape([model], MetricsSettings(summary_latencies=True))
    samples = {
        (s.name, s.labels.get("quantile")): s.value
        for s in families["nv_inference_request_summary_us"].samples
    }
    assert samples[("nv_inference_request_summary_us_count", None)] == 5
    assert samples[("nv_inference_request_summary_us_sum", None)] == 15_000
    assert samples[("nv_inference_request_summary_us", "0.5")] == 3_000
    assert samples[("nv_inference_request_summary_us", "0.999")] == 3_000
    assert "nv_inference_compute_output_summary_us" in families


def test_histogram_uses_model_metrics_buckets() -> None:
    model = FakeModel("m")
    control = model.config.model_metrics.metric_control.add()
    control.metric_identifier.family = "nv_inference_first_response_histogram_ms"
    control.histogram_options.buckets.extend([1.0, 2.5, 10.0])
    observer = Observer(RecorderSettings(histograms=True))
    _serve(model, observer, 2, request_ns=2_000_000)  # 2 ms
    _serve(model, observer, 1, request_ns=50_000_000)  # 50 ms
    text, families = _scrape([model], MetricsSettings(histogram_latencies=True))
    buckets = {
        s.labels["le"]: s.value
        for s in families["nv_inference_first_response_histogram_ms"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets == {"1": 0, "2.5": 2, "10": 2, "+Inf": 3}  # Triton writes le="100"
    assert 'nv_inference_first_response_histogram_ms_count{model="m",version="1"} 3.0' in text


def test_default_histogram_buckets_are_tritons() -> None:
    assert histogram_buckets(mc.ModelConfig()) == [100.0, 500.0, 2000.0, 5000.0]


def test_sliding_window_forgets_old_observations() -> None:
    window = SlidingWindow(max_age_s=10.0, age_buckets=5)
    for value in range(1, 101):
        window.observe(float(value), now=1.0)
    assert window.quantiles([0.5, 0.99], now=1.5) == [50.0, 99.0]
    window.observe(1000.0, now=9.0)
    assert window.quantiles([1.0], now=9.5) == [1000.0]
    assert all(math.isnan(v) for v in window.quantiles([0.5], now=30.0))


def test_sliding_window_stays_bounded_and_weights_samples() -> None:
    window = SlidingWindow(max_age_s=10.0, age_buckets=5, cap=100)
    for _ in range(10_000):
        window.observe(1.0, now=0.5)  # a busy bucket, sampled down to 100 values
    for _ in range(50):
        window.observe(5.0, now=2.5)  # a quiet one
    assert len(window.values(now=3.0)) == 150
    # The busy bucket stands for 10,000 observations, so the median is still 1.
    assert window.quantiles([0.5, 0.999], now=3.0) == [1.0, 5.0]


def test_histogram_bounds_are_inclusive() -> None:
    histogram = Histogram([1.0, 2.0])
    for value in (0.5, 1.0, 1.5, 2.0, 3.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(1.0, 2), (2.0, 4), (math.inf, 5)]


def test_custom_families_merge_across_sources() -> None:
    custom = CustomMetrics()
    labels = {"model": "py", "version": "1"}

    def instance(value: float) -> list[CustomFamily]:
        return [
            CustomFamily(
                "requests_seen", "Requests seen", "counter", [CustomSample(labels, value)]
            ),
            CustomFamily("queue_depth", "Depth", "gauge", [CustomSample(labels, value)]),
            CustomFamily(
                "sizes",
                "Sizes",
                "histogram",
                [CustomSample(labels, buckets=[1.0], bucket_counts=[1, 2], sum=value)],
            ),
        ]

    custom.register_source(lambda: instance(2))
    stop = custom.register_source(lambda: instance(3))
    text, _ = _scrape([], MetricsSettings(), custom)
    assert 'requests_seen{model="py",version="1"} 5.0' in text
    assert "# TYPE requests_seen counter" in text
    assert 'queue_depth{model="py",version="1"} 3.0' in text
    assert 'sizes_bucket{le="+Inf",model="py",version="1"} 6.0' in text
    stop()
    text, _ = _scrape([], MetricsSettings(), custom)
    assert 'requests_seen{model="py",version="1"} 2.0' in text


def test_custom_family_cannot_shadow_a_builtin_one() -> None:
    custom = CustomMetrics()
    custom.register_source(
        lambda: [CustomFamily("nv_inference_count", "x", "counter", [CustomSample({}, 1)])]
    )
    text, _ = _scrape([], MetricsSettings(), custom)
    assert "nv_inference_count 1.0" not in text


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([], MetricsSettings()),
        (["summary_latencies=true"], MetricsSettings(summary_latencies=True)),
        (
            ["summary_quantiles=0.5:0.05,0.99:0.001"],
            MetricsSettings(quantiles=((0.5, 0.05), (0.99, 0.001))),
        ),
        (["counter_latencies=false"], MetricsSettings(counter_latencies=False)),
    ],
)
def test_metrics_config(entries: list[str], expected: MetricsSettings) -> None:
    assert MetricsSettings.from_config(entries) == expected


@pytest.mark.parametrize(
    "entry", ["summary_latencies=maybe", "nonsense=1", "summary_quantiles=2:0.1", "novalue"]
)
def test_metrics_config_errors(entry: str) -> None:
    with pytest.raises(ValueError):
        MetricsSettings.from_config([entry])
