"""Sequence control inputs and implicit state, as the sequence batcher adds them to requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from naiad.core.model_io import ModelIO
from naiad.core.scheduling.sequence_controls import SequenceControls
from naiad.errors import InvalidArgumentError, ModelLoadError
from naiad.inference import InferenceRequest, InferInput
from naiad.tensors import DataType


def _config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


CONFIG = """
name: "m"
max_batch_size: 2
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] },
        { name: "S" data_type: TYPE_FP32 dims: [ 1 ] } ]
sequence_batching {
  control_input [
    { name: "S" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 2.5 ] } ] },
    { name: "E" control [ { kind: CONTROL_SEQUENCE_END bool_false_true: [ false, true ] } ] },
    { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_STRING } ] }
  ]
  state [ { input_name: "ST_IN" output_name: "ST_OUT" data_type: TYPE_INT32 dims: [ 2 ]
            initial_state { data_type: TYPE_INT32 dims: [ 2 ] data_file: "init.bin" } } ]
}
"""


def _request() -> InferenceRequest:
    data = np.ones((1, 1), dtype=np.float32)
    return InferenceRequest("m", inputs=[InferInput("IN", DataType.FP32, (1, 1), data)])


def test_controls_and_initial_state_from_a_data_file(tmp_path: Path) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "init.bin").write_bytes(np.array([7, 9], np.int32).tobytes())
    controls = SequenceControls(_config(CONFIG), tmp_path)
    assert controls.names == {"S", "E", "C", "ST_IN"}
    first = controls.augment(_request(), "abc", True, False, {}).input_map()
    assert first["S"].data.tolist() == [[2.5]] and first["E"].data.tolist() == [[False]]
    assert first["C"].data.tolist() == [[b"abc"]]
    assert first["ST_IN"].data.tolist() == [[7, 9]]
    result = {"OUT": np.zeros((1, 1)), "ST_OUT": np.array([[1, 2]], np.int32)}
    state = controls.take_state(result)
    assert "ST_OUT" not in result  # clients never see the state output
    later = controls.augment(_request(), "abc", False, True, state).input_map()
    assert later["ST_IN"].data.tolist() == [[1, 2]] and later["E"].data.tolist() == [[True]]
    restarted = controls.augment(_request(), "abc", True, False, state).input_map()
    assert restarted["ST_IN"].data.tolist() == [[7, 9]]


def test_string_corrid_refuses_integer_ids(tmp_path: Path) -> None:
    (tmp_path / "initial_state").mkdir()
    (tmp_path / "initial_state" / "init.bin").write_bytes(bytes(8))
    controls = SequenceControls(_config(CONFIG), tmp_path)
    controls.check_id("m", "a-uuid")
    with pytest.raises(InvalidArgumentError, match="expects a string correlation ID"):
        controls.check_id("m", 5)


def test_missing_initial_state_file_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="cannot read initial state file"):
        SequenceControls(_config(CONFIG), tmp_path)


def test_control_inputs_listed_as_inputs_are_not_required() -> None:
    io = ModelIO.from_config(_config(CONFIG))
    assert io.required_inputs == ["IN"]


def test_flag_control_needs_two_values() -> None:
    config = _config(
        'name: "m" sequence_batching { control_input [ { name: "S" control [ '
        "{ kind: CONTROL_SEQUENCE_START int32_false_true: [ 1 ] } ] } ] }"
    )
    with pytest.raises(ModelLoadError, match="exactly two values"):
        SequenceControls(config, None)
