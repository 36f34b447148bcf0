"""Pick a model's scheduler from its config, as Triton does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from naiad.core.scheduling.base import InstanceSlot, Scheduler
from naiad.core.scheduling.default import DefaultScheduler
from naiad.core.scheduling.dynamic_batcher import DynamicBatcher
from naiad.core.scheduling.rate_limiter import RateLimiter
from naiad.core.scheduling.sequence_batcher import SequenceBatcher
from naiad.core.statistics import ModelStatistics
from naiad.errors import ModelLoadError


def build_scheduler(
    config: mc.ModelConfig,
    slots: Sequence[InstanceSlot],
    stats: ModelStatistics,
    rate_limiter: RateLimiter | None,
    stacks_batches: bool,
    model_dir: Path | None = None,
) -> Scheduler:
    if config.batch_input or config.batch_output:
        # Ragged-batch inputs need backend support; no backend here provides them yet, and
        # running the model without them would give wrong results, so refuse clearly.
        raise ModelLoadError(
            f"model '{config.name}': batch_input / batch_output (ragged batching inputs) are "
            f"not supported by backend '{config.backend}' on this server"
        )
    choice = config.WhichOneof("scheduling_choice")
    if choice == "sequence_batching":
        # model_dir locates initial_state data files; sequences bypass the rate limiter.
        return SequenceBatcher(slots, config, stats, model_dir)
    if choice == "ensemble_scheduling":
        # Ensembles get core.ensemble.EnsembleScheduler from the loader; only a config
        # that has steps without platform "ensemble" gets here.
        raise ModelLoadError(
            f"model '{config.name}': 'ensemble_scheduling' requires platform 'ensemble'"
        )
    if choice == "dynamic_batching" and config.max_batch_size > 0:
        # Backends that concatenate requests cannot mix ragged shapes, so for them a
        # ragged input still has to match; backends taking requests one by one can.
        ragged = frozenset(
            tensor.name
            for tensor in config.input
            if tensor.allow_ragged_batch and not stacks_batches
        )
        return DynamicBatcher(slots, config, stats, rate_limiter, ragged)
    return DefaultScheduler(slots, stats, rate_limiter)
