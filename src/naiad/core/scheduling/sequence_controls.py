"""What the sequence batcher adds to each request: control inputs and implicit state.

``sequence_batching.control_input`` names tensors the server fills (clients never send
them): START, END and READY flags (``int32_false_true``, ``fp32_false_true`` or
``bool_false_true``) and the correlation id (CORRID, an integer type or STRING).
``sequence_batching.state`` names input/output tensor pairs the server carries from one
request of a sequence to the next, starting from ``initial_state`` (zeros or a file
under the model's ``initial_state/`` directory) at every START.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import InvalidArgumentError, ModelLoadError
from naiad.inference import InferenceRequest, InferInput
from naiad.tensors import DataType

Kind = mc.ModelSequenceBatching.Control
SequenceId = int | str

_CORRID_TYPES = {
    mc.TYPE_UINT64: DataType.UINT64,
    mc.TYPE_INT64: DataType.INT64,
    mc.TYPE_UINT32: DataType.UINT32,
    mc.TYPE_INT32: DataType.INT32,
    mc.TYPE_STRING: DataType.BYTES,
}


@dataclass(frozen=True, slots=True)
class FlagControl:
    """A START / END / READY input: its name and the (false, true) values to send."""

    name: str
    kind: int
    datatype: DataType
    values: tuple[object, object]


@dataclass(frozen=True, slots=True)
class StateSpec:
    input_name: str
    output_name: str
    datatype: DataType
    initial: np.ndarray  # without the batch dimension


class SequenceControls:
    """A model's control inputs and states, parsed once at load."""

    def __init__(self, config: mc.ModelConfig, model_dir: Path | None) -> None:
        batching = config.sequence_batching
        self.batched = config.max_batch_size > 0
        self.flags: list[FlagControl] = []
        self.corrid: tuple[str, DataType] | None = None
        for control_input in batching.control_input:
            for control in control_input.control:
                self._add(config.name, control_input.name, control)
        self.states = [_state(config.name, state, model_dir) for state in batching.state]

    def _add(self, model: str, name: str, control: mc.ModelSequenceBatching.Control) -> None:
        if control.kind == Kind.CONTROL_SEQUENCE_CORRID:
            datatype = _CORRID_TYPES.get(control.data_type)
            if datatype is None:
                raise ModelLoadError(
                    f"model '{model}': CONTROL_SEQUENCE_CORRID '{name}' must have data_type "
                    "TYPE_UINT64, TYPE_INT64, TYPE_UINT32, TYPE_INT32 or TYPE_STRING"
                )
            self.corrid = (name, datatype)
            return
        if control.kind not in (
            Kind.CONTROL_SEQUENCE_START,
            Kind.CONTROL_SEQUENCE_END,
            Kind.CONTROL_SEQUENCE_READY,
        ):
            raise ModelLoadError(
                f"model '{model}': sequence control kind "
                f"{Kind.Kind.Name(control.kind)} is not supported by this server"
            )
        values: tuple[object, object]
        if len(control.int32_false_true) == 2:
            datatype, values = DataType.INT32, tuple(control.int32_false_true)
        elif len(control.fp32_false_true) == 2:
            datatype, values = DataType.FP32, tuple(control.fp32_false_true)
        elif len(control.bool_false_true) == 2:
            datatype, values = DataType.BOOL, tuple(control.bool_false_true)
        else:
            raise ModelLoadError(
                f"model '{model}': sequence control '{name}' must give exactly two values in "
                "int32_false_true, fp32_false_true or bool_false_true"
            )
        self.flags.append(FlagControl(name, control.kind, datatype, values))

    @property
    def names(self) -> frozenset[str]:
        """Inputs the server fills, which clients need not (and should not) send."""
        names = {flag.name for flag in self.flags} | {s.input_name for s in self.states}
        if self.corrid is not None:
            names.add(self.corrid[0])
        return frozenset(names)

    def check_id(self, model: str, sequence_id: SequenceId) -> None:
        """Refuse an id whose type the CORRID input cannot carry."""
        if self.corrid is None:
            return
        wants_string = self.corrid[1] is DataType.BYTES
        if wants_string != isinstance(sequence_id, str):
            expected = "a string" if wants_string else "an unsigned integer"
            raise InvalidArgumentError(
                f"sequence batcher of model '{model}' expects {expected} correlation ID "
                f"(CONTROL_SEQUENCE_CORRID data type "
                f"{'TYPE_STRING' if wants_string else 'integer'}), got '{sequence_id}'"
            )

    def augment(
        self,
        request: InferenceRequest,
        sequence_id: SequenceId,
        start: bool,
        end: bool,
        state: dict[str, np.ndarray],
    ) -> InferenceRequest:
        """A copy of ``request`` with the control and state inputs added."""
        lead = (1,) if self.batched else ()
        inputs = list(request.inputs)
        for flag in self.flags:
            on = (
                start
                if flag.kind == Kind.CONTROL_SEQUENCE_START
                else end
                if flag.kind == Kind.CONTROL_SEQUENCE_END
                else True  # every request this batcher sends is READY
            )
            data = np.full((*lead, 1), flag.values[int(on)], dtype=flag.datatype.numpy_dtype)
            inputs.append(InferInput(flag.name, flag.datatype, data.shape, data))
        if self.corrid is not None:
            name, datatype = self.corrid
            value = sequence_id.encode() if isinstance(sequence_id, str) else sequence_id
            data = np.full((*lead, 1), value, dtype=datatype.numpy_dtype)
            inputs.append(InferInput(name, datatype, data.shape, data))
        for spec in self.states:
            array = state.get(spec.input_name) if not start else None
            if array is None:
                array = spec.initial.reshape(lead + spec.initial.shape)
            inputs.append(InferInput(spec.input_name, spec.datatype, array.shape, array))
        return InferenceRequest(
            model_name=request.model_name,
            model_version=request.model_version,
            id=request.id,
            inputs=inputs,
            outputs=request.outputs,
            parameters=request.parameters,
        )

    def take_state(self, result: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The next state of a sequence, taken out of a result (clients never see it)."""
        taken: dict[str, np.ndarray] = {}
        for spec in self.states:
            array = result.pop(spec.output_name, None)
            if array is not None:
                taken[spec.input_name] = np.array(array, copy=True)
        return taken


def _state(model: str, state: mc.ModelSequenceBatching.State, model_dir: Path | None) -> StateSpec:
    datatype = DataType.from_config_name(mc.DataType.Name(state.data_type))
    dtype = datatype.numpy_dtype
    if not state.initial_state:
        # No initial state: zeros, with variable dims as 1 (documented in scheduling.md).
        dims = [d if d > 0 else 1 for d in state.dims]
        initial = np.zeros(dims, dtype=dtype)
    else:
        first = state.initial_state[0]
        dims = list(first.dims)
        if any(d < 0 for d in dims):
            raise ModelLoadError(
                f"model '{model}': initial_state of '{state.input_name}' needs fixed dims"
            )
        if first.WhichOneof("state_data") == "data_file":
            if model_dir is None:
                raise ModelLoadError(f"model '{model}': initial_state data_file needs a model dir")
            path = model_dir / "initial_state" / first.data_file
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise ModelLoadError(
                    f"model '{model}': cannot read initial state file '{path}': {exc.strerror}"
                ) from None
            count = int(np.prod(dims)) if dims else 1
            if len(raw) != count * np.dtype(dtype).itemsize:
                raise ModelLoadError(
                    f"model '{model}': initial state file '{path}' holds {len(raw)} bytes, "
                    f"expected {count * np.dtype(dtype).itemsize}"
                )
            initial = np.frombuffer(raw, dtype=dtype).reshape(dims).copy()
        else:
            initial = np.zeros(dims, dtype=dtype)
    return StateSpec(state.input_name, state.output_name, datatype, initial)
