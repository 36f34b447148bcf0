"""The dashboard's JSON snapshot: server state and, per model version, live figures.

Counts come from the core's exact statistics (the same numbers ``/metrics`` reports);
p50/p99 latency and the queue-time histogram come from the last seconds of requests
the observability recorder keeps. The page computes request rates from successive
snapshots' counts.
"""

from __future__ import annotations

import bisect
import time
from typing import Any

from naiad import __version__
from naiad.core.service import InferenceService
from naiad.core.statistics import FAILURE_REASONS
from naiad.observability.latency import recorder_of
from naiad.observability.system import SystemMetrics

QUEUE_BUCKETS_MS = (0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0, 500.0)


WINDOW_S = 10.0  # the page's latencies and queue times cover the last 10 seconds


def _quantiles(values: list[float]) -> dict[str, float | None]:
    """Nearest-rank p50 and p99 (None without requests)."""
    if not values:
        return {"p50": None, "p99": None}
    ordered = sorted(values)
    last = len(ordered) - 1
    return {"p50": ordered[round(0.5 * last)], "p99": ordered[round(0.99 * last)]}


def _queue_histogram(values: list[float]) -> list[dict[str, Any]]:
    counts = [0] * (len(QUEUE_BUCKETS_MS) + 1)
    for value in values:
        counts[bisect.bisect_left(QUEUE_BUCKETS_MS, value)] += 1
    labels = [f"≤{b:g}" for b in QUEUE_BUCKETS_MS] + [f">{QUEUE_BUCKETS_MS[-1]:g}"]
    return [{"label": label, "count": count} for label, count in zip(labels, counts, strict=True)]


def _model_entry(model: Any, now: float) -> dict[str, Any]:
    stats = model.stats
    recorder = recorder_of(model)
    latency, queue = recorder.recent(WINDOW_S, now) if recorder is not None else ([], [])
    pending = getattr(model.scheduler, "pending_count", None)
    return {
        "success": stats.success.count,
        "failure": {reason: stats.failures.get(reason, 0) for reason in FAILURE_REASONS},
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "pending": pending() if pending is not None else 0,
        "latency_ms": _quantiles(latency),
        "queue_ms": _quantiles(queue),
        "queue_histogram": _queue_histogram(queue),
        "batch_sizes": [
            {"size": size, "count": batch.compute_infer.count}
            for size, batch in sorted(stats.batch_stats.items())
        ],
    }


async def snapshot(
    service: InferenceService, system: SystemMetrics | None, started: float
) -> dict[str, Any]:
    ready = {(m.name, m.version_str): m for m in service.model_statistics()}
    entries = await service.repository_index()
    now = time.monotonic()
    models = []
    for entry in entries:
        item: dict[str, Any] = {
            "name": entry.name,
            "version": entry.version,
            "state": entry.state,
            "reason": entry.reason,
        }
        model = ready.get((entry.name, entry.version))
        if model is not None:
            item.update(_model_entry(model, now))
        models.append(item)
    metadata = service.server_metadata()
    server: dict[str, Any] = {
        "name": metadata.name,
        "version": metadata.version or __version__,
        "live": service.server_live(),
        "ready": service.server_ready(),
        "uptime_s": round(now - started, 1),
    }
    if system is not None:
        server["cpu_utilization"] = system.cpu_utilization
        server["memory_used_bytes"] = system.memory_used_bytes
        server["memory_total_bytes"] = system.memory_total_bytes
    return {"time": time.time(), "server": server, "models": models}
