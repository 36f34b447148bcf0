"""Statistics as Triton's ``ModelStatistics`` message, shared by the HTTP and gRPC frontends."""

from __future__ import annotations

from collections.abc import Sequence

from tritonclient.grpc import service_pb2 as pb

from naiad.core.model import ModelVersion
from naiad.core.statistics import Duration


def _duration(value: Duration) -> pb.StatisticDuration:
    return pb.StatisticDuration(count=value.count, ns=value.ns)


def statistics_message(models: Sequence[ModelVersion]) -> pb.ModelStatisticsResponse:
    response = pb.ModelStatisticsResponse()
    for model in models:
        stats = model.stats
        entry = response.model_stats.add(
            name=model.name,
            version=model.version_str,
            last_inference=stats.last_inference_ms,
            inference_count=stats.inference_count,
            execution_count=stats.execution_count,
        )
        infer = entry.inference_stats
        for name in (
            "success", "fail", "queue", "compute_input", "compute_infer",
            "compute_output", "cache_hit", "cache_miss",
        ):  # fmt: skip
            getattr(infer, name).CopyFrom(_duration(getattr(stats, name)))
        for batch_size in sorted(stats.batch_stats):
            batch = stats.batch_stats[batch_size]
            entry.batch_stats.add(
                batch_size=batch_size,
                compute_input=_duration(batch.compute_input),
                compute_infer=_duration(batch.compute_infer),
                compute_output=_duration(batch.compute_output),
            )
    return response
