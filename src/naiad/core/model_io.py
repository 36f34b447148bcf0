"""A loaded model's tensor descriptions, precomputed once from its config for fast checks."""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from naiad.tensors import DataType


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output as requests see it: dims exclude the batch dimension."""

    name: str
    datatype: DataType
    dims: tuple[int, ...]
    optional: bool = False
    label_filename: str = ""

    def full_shape(self, max_batch_size: int) -> list[int]:
        """Shape as model metadata reports it: a leading -1 for batching models."""
        return ([-1] if max_batch_size > 0 else []) + list(self.dims)


@dataclass(frozen=True, slots=True)
class ModelIO:
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    max_batch_size: int

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> ModelIO:
        def spec(tensor: mc.ModelInput | mc.ModelOutput, optional: bool, label: str) -> TensorSpec:
            dims = tuple(tensor.dims)
            return TensorSpec(
                name=tensor.name,
                datatype=DataType.from_config_name(mc.DataType.Name(tensor.data_type)),
                dims=dims,
                optional=optional,
                label_filename=label,
            )

        # Sequence control and state inputs are filled by the server, never required of
        # clients, even when a config also lists them as inputs.
        filled = {c.name for c in config.sequence_batching.control_input}
        filled |= {state.input_name for state in config.sequence_batching.state}
        return cls(
            inputs={t.name: spec(t, t.optional or t.name in filled, "") for t in config.input},
            outputs={t.name: spec(t, False, t.label_filename) for t in config.output},
            max_batch_size=config.max_batch_size,
        )

    @property
    def required_inputs(self) -> list[str]:
        return [name for name, spec in self.inputs.items() if not spec.optional]
