"""Observability settings from the command line (light: no prometheus or OpenTelemetry import).

``--metrics-config`` and ``--metrics-interval-ms`` (:class:`MetricsSettings`),
``--trace-config`` (:class:`~.trace_settings.TraceConfig`), the log flags
(:class:`~.log_settings.LogSettings`) and ``--allow-dashboard``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from naiad.observability.log_settings import LogSettings
from naiad.observability.trace_settings import TraceConfig

# Triton's default summary quantiles (quantile: allowed error).
DEFAULT_QUANTILES = ((0.5, 0.05), (0.9, 0.01), (0.95, 0.001), (0.99, 0.001), (0.999, 0.000001))


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    """``--metrics-config`` switches, ``--metrics-interval-ms``, ``--allow-cpu-metrics``."""

    counter_latencies: bool = True
    summary_latencies: bool = False
    histogram_latencies: bool = False
    quantiles: tuple[tuple[float, float], ...] = DEFAULT_QUANTILES
    cpu_metrics: bool = True
    interval_ms: int = 2000

    @classmethod
    def from_config(
        cls, entries: Sequence[str], *, cpu_metrics: bool = True, interval_ms: int = 2000
    ) -> MetricsSettings:
        """Parse ``KEY=VALUE`` entries; ValueError says what is wrong."""
        values: dict[str, Any] = {}
        for entry in entries:
            key, sep, value = entry.partition("=")
            key, value = key.strip(), value.strip().strip('"')
            if not sep:
                raise ValueError(f"expected --metrics-config KEY=VALUE, got '{entry}'")
            if key in ("counter_latencies", "summary_latencies", "histogram_latencies"):
                if value.lower() not in ("true", "false"):
                    raise ValueError(f"--metrics-config {key} takes true or false, got '{value}'")
                values[key] = value.lower() == "true"
            elif key == "summary_quantiles":
                values["quantiles"] = _parse_quantiles(value)
            else:
                raise ValueError(f"unknown --metrics-config setting '{key}'")
        if interval_ms <= 0:
            raise ValueError("--metrics-interval-ms must be > 0")
        return cls(cpu_metrics=cpu_metrics, interval_ms=interval_ms, **values)


def _parse_quantiles(text: str) -> tuple[tuple[float, float], ...]:
    pairs = []
    for part in text.replace(" ", ",").split(","):
        if not part:
            continue
        quantile, sep, error = part.partition(":")
        try:
            pair = (float(quantile), float(error) if sep else 0.0)
        except ValueError:
            raise ValueError(f"invalid summary quantile '{part}' (QUANTILE:ERROR)") from None
        if not 0.0 <= pair[0] <= 1.0:
            raise ValueError(f"summary quantile {pair[0]} is not within [0, 1]")
        pairs.append(pair)
    if not pairs:
        raise ValueError("summary_quantiles names no quantile")
    return tuple(pairs)


@dataclass(slots=True)
class ObservabilitySettings:
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    trace: TraceConfig = field(default_factory=TraceConfig)
    logs: LogSettings = field(default_factory=LogSettings)
    allow_dashboard: bool = True
