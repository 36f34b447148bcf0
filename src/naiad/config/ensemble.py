"""Check an ensemble's ``ensemble_scheduling`` and order its steps (pure; no models needed).

An ensemble's steps form a graph through named tensors: a step consumes the ensemble
tensors its ``input_map`` values name and produces those its ``output_map`` values
name. :func:`plan_ensemble` validates that graph as Triton does (every tensor produced
once, every consumed tensor produced or an ensemble input, every ensemble output
produced, every ensemble input used, no cycle) and returns the steps, so that the
scheduler can start each one as soon as its inputs exist. Errors name the tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import ModelConfigError


@dataclass(frozen=True, slots=True)
class EnsembleStep:
    """One step: which model it runs and how its tensors map onto the ensemble's."""

    index: int
    model_name: str
    # "" means the latest ready version (Triton's model_version -1).
    model_version: str
    # Step input name -> ensemble tensor name.
    inputs: dict[str, str]
    # Step output name -> ensemble tensor name.
    outputs: dict[str, str]

    @property
    def consumes(self) -> frozenset[str]:
        return frozenset(self.inputs.values())


def plan_ensemble(config: mc.ModelConfig, source: str) -> list[EnsembleStep]:
    """The validated steps of an ensemble config, in config order."""
    name = config.name
    where = f"ensemble '{name}' ({source})"
    if config.WhichOneof("scheduling_choice") != "ensemble_scheduling":
        raise ModelConfigError(f"{where}: platform 'ensemble' requires 'ensemble_scheduling'")
    if not config.ensemble_scheduling.step:
        raise ModelConfigError(f"{where}: 'ensemble_scheduling' must have at least one 'step'")
    if config.ensemble_scheduling.max_inflight_requests < 0:
        raise ModelConfigError(
            f"{where}: field 'ensemble_scheduling.max_inflight_requests' must be >= 0"
        )
    ensemble_inputs = {tensor.name for tensor in config.input}
    steps: list[EnsembleStep] = []
    producer: dict[str, int] = {}
    for index, step in enumerate(config.ensemble_scheduling.step):
        label = f"{where}: step {index}"
        if not step.model_name:
            raise ModelConfigError(f"{label} must specify 'model_name'")
        label = f"{where}: step {index} (model '{step.model_name}')"
        if step.model_name == name:
            raise ModelConfigError(f"{label} names the ensemble itself")
        if not step.input_map:
            raise ModelConfigError(f"{label} must specify 'input_map'")
        if not step.output_map:
            raise ModelConfigError(f"{label} must specify 'output_map'")
        if step.model_version < -1 or step.model_version == 0:
            raise ModelConfigError(f"{label}: 'model_version' must be -1 or > 0")
        for tensor in step.output_map.values():
            if tensor in ensemble_inputs:
                raise ModelConfigError(
                    f"{label}: ensemble tensor '{tensor}' is an ensemble input and cannot "
                    "also be a step output"
                )
            if tensor in producer:
                raise ModelConfigError(
                    f"{label}: ensemble tensor '{tensor}' can appear in an output map only "
                    f"once (step {producer[tensor]} already produces it)"
                )
            producer[tensor] = index
        steps.append(
            EnsembleStep(
                index=index,
                model_name=step.model_name,
                model_version="" if step.model_version == -1 else str(step.model_version),
                inputs=dict(step.input_map),
                outputs=dict(step.output_map),
            )
        )
    consumed: set[str] = set()
    for step in steps:
        for tensor in sorted(step.consumes):
            if tensor not in producer and tensor not in ensemble_inputs:
                raise ModelConfigError(
                    f"{where}: ensemble tensor '{tensor}' is consumed by step {step.index} "
                    f"(model '{step.model_name}') but is neither an ensemble input nor an "
                    "output of any step"
                )
        consumed |= step.consumes
    for tensor in config.output:
        if tensor.name not in producer:
            raise ModelConfigError(
                f"{where}: ensemble output '{tensor.name}' is not mapped from any step's output"
            )
    for tensor in config.input:
        if tensor.name not in consumed:
            raise ModelConfigError(
                f"{where}: ensemble input '{tensor.name}' is not mapped to any step's input"
            )
    _check_acyclic(steps, producer, where)
    return steps


def _check_acyclic(steps: list[EnsembleStep], producer: dict[str, int], where: str) -> None:
    """Kahn's algorithm over the steps; what is left over lies on (or behind) a cycle."""
    waiting = {step.index: {producer[t] for t in step.consumes if t in producer} for step in steps}
    done: set[int] = set()
    progress = True
    while progress:
        progress = False
        for index, needs in waiting.items():
            if index not in done and needs <= done:
                done.add(index)
                progress = True
    stuck = [step for step in steps if step.index not in done]
    if not stuck:
        return
    # Name a tensor on the cycle: follow producers from a stuck step until one repeats.
    by_index = {step.index: step for step in steps}
    seen: list[int] = []
    current = stuck[0].index
    edge: dict[int, str] = {}
    while current not in seen:
        seen.append(current)
        step = by_index[current]
        tensor = next(t for t in sorted(step.consumes) if t in producer and producer[t] not in done)
        edge[current] = tensor
        current = producer[tensor]
    tensor = edge[current]
    cycle = seen[seen.index(current) :]
    models = ", ".join(f"'{by_index[i].model_name}'" for i in cycle)
    raise ModelConfigError(
        f"{where}: circular dependency through ensemble tensor '{tensor}' (steps of models "
        f"{models} wait on each other's outputs)"
    )
