"""The ``naiad serve`` flags for metrics, tracing, logging and the dashboard (Triton's names).

``cli.py`` adds them to the ``serve`` parser and folds the values into
``ServerSettings.observability``. ``--allow-metrics``, ``--metrics-address``,
``--metrics-port`` and ``--log-verbose`` were there before and stay in ``cli.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from naiad.observability.log_settings import FORMATS, LogSettings
from naiad.observability.settings import MetricsSettings, ObservabilitySettings
from naiad.observability.trace_settings import TraceConfig

BoolFlag = Callable[[argparse.ArgumentParser, str, bool, str], None]


def add_observability_flags(serve: argparse.ArgumentParser, bool_flag: BoolFlag) -> None:
    bool_flag(serve, "--allow-cpu-metrics", True, "report CPU utilization and memory")
    bool_flag(serve, "--allow-gpu-metrics", False, "accepted for compatibility; no GPU metrics")
    serve.add_argument(
        "--metrics-interval-ms",
        type=int,
        default=2000,
        metavar="MS",
        help="how often CPU and memory metrics are polled",
    )
    serve.add_argument(
        "--metrics-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="counter_latencies, summary_latencies, summary_quantiles=Q:E,..., "
        "histogram_latencies (repeatable)",
    )
    serve.add_argument(
        "--trace-config",
        action="append",
        default=[],
        metavar="[MODE,]KEY=VALUE",
        help="rate, level, count, mode; triton,file / triton,log-frequency; "
        "opentelemetry,url / opentelemetry,resource (repeatable)",
    )
    # Triton's deprecated spellings of --trace-config, still found in launch scripts.
    for flag, key in (
        ("--trace-file", "triton,file"),
        ("--trace-level", "level"),
        ("--trace-rate", "rate"),
        ("--trace-count", "count"),
        ("--trace-log-frequency", "triton,log-frequency"),
    ):
        serve.add_argument(
            flag,
            action="append",
            default=[],
            dest=f"deprecated_{flag[2:].replace('-', '_')}",
            metavar="VALUE",
            help=f"deprecated: --trace-config {key}=VALUE",
        )
    bool_flag(serve, "--log-info", True, "log informational messages")
    bool_flag(serve, "--log-warning", True, "log warnings")
    bool_flag(serve, "--log-error", True, "log errors")
    serve.add_argument(
        "--log-format",
        choices=FORMATS,
        default="default",
        help="default (Triton's), ISO8601, or json (one object per line)",
    )
    serve.add_argument(
        "--log-file", default="", metavar="PATH", help="write the log to PATH, not stderr"
    )
    bool_flag(serve, "--allow-dashboard", True, "serve the live dashboard at GET / (HTTP port)")


_DEPRECATED = (
    ("deprecated_trace_file", "triton,file"),
    ("deprecated_trace_level", "level"),
    ("deprecated_trace_rate", "rate"),
    ("deprecated_trace_count", "count"),
    ("deprecated_trace_log_frequency", "triton,log-frequency"),
)


def observability_from_args(args: argparse.Namespace) -> ObservabilitySettings:
    """The settings the flags give; ValueError (with the flag's name) when one is wrong."""
    entries = [f"{key}={value}" for dest, key in _DEPRECATED for value in getattr(args, dest)]
    entries += list(args.trace_config)
    try:
        trace = TraceConfig.from_entries(entries)
    except ValueError as exc:
        raise ValueError(f"--trace-config: {exc}") from None
    metrics = MetricsSettings.from_config(
        args.metrics_config,
        cpu_metrics=args.allow_cpu_metrics,
        interval_ms=args.metrics_interval_ms,
    )
    if args.log_verbose < 0:
        raise ValueError("--log-verbose must be >= 0")
    logs = LogSettings(
        info=args.log_info,
        warning=args.log_warning,
        error=args.log_error,
        verbose_level=args.log_verbose,
        format=args.log_format,
        file=args.log_file,
    )
    return ObservabilitySettings(
        metrics=metrics, trace=trace, logs=logs, allow_dashboard=args.allow_dashboard
    )
