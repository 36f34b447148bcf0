"""The sequence batcher against a real server: control inputs, strategies, implicit state,
idle expiry and Triton's errors, over HTTP and gRPC with the real tritonclient.

Models are small ONNX graphs built here with ``onnx.helper`` whose outputs depend on
the control inputs the server fills, so a wrong START/END/READY/CORRID or a state not
carried between requests shows up as a wrong number.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from tests.python_models import write_python_model
from tests.repository import write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

IDLE_US = 200_000


def _onnx(nodes: list[onnx.NodeProto], inputs: dict[str, int], outputs: list[str]) -> bytes:
    graph = helper.make_graph(
        nodes,
        "sequence",
        [helper.make_tensor_value_info(n, t, ["batch", 1]) for n, t in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.INT32, ["batch", 1]) for n in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _ready_start_model() -> bytes:
    """OUTPUT = READY * (INPUT + START)."""
    nodes = [
        helper.make_node("Add", ["INPUT", "START"], ["sum"]),
        helper.make_node("Mul", ["READY", "sum"], ["OUTPUT"]),
    ]
    i32 = TensorProto.INT32
    return _onnx(nodes, {"INPUT": i32, "START": i32, "READY": i32}, ["OUTPUT"])


def _corrid_model() -> bytes:
    """OUTPUT = READY * (INPUT + START + END * CORRID), CORRID an INT64."""
    nodes = [
        helper.make_node("Cast", ["CORRID"], ["corrid"], to=TensorProto.INT32),
        helper.make_node("Mul", ["END", "corrid"], ["end_corrid"]),
        helper.make_node("Add", ["INPUT", "START"], ["a"]),
        helper.make_node("Add", ["a", "end_corrid"], ["b"]),
        helper.make_node("Mul", ["READY", "b"], ["OUTPUT"]),
    ]
    i32 = TensorProto.INT32
    inputs = {"INPUT": i32, "START": i32, "END": i32, "READY": i32, "CORRID": TensorProto.INT64}
    return _onnx(nodes, inputs, ["OUTPUT"])


def _state_model() -> bytes:
    """OUTPUT = INPUT + STATE_IN, STATE_OUT = STATE_IN + INPUT."""
    nodes = [
        helper.make_node("Add", ["INPUT", "STATE_IN"], ["OUTPUT"]),
        helper.make_node("Add", ["STATE_IN", "INPUT"], ["STATE_OUT"]),
    ]
    i32 = TensorProto.INT32
    return _onnx(nodes, {"INPUT": i32, "STATE_IN": i32}, ["OUTPUT", "STATE_OUT"])


def _control(name: str, kind: str, data_type: str = "") -> str:
    if kind == "CORRID":
        return f'{{ name: "{name}" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: {data_type} }} ] }}'
    return (
        f'{{ name: "{name}" control [ {{ kind: CONTROL_SEQUENCE_{kind} '
        "int32_false_true: [ 0, 1 ] } ] }"
    )


def _config(name: str, sequence: str, max_batch_size: int = 4) -> str:
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [ {{ name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
sequence_batching {{ {sequence} }}
"""


DIRECT = (
    f"control_input [ {_control('START', 'START')}, {_control('READY', 'READY')} ] "
    f"max_sequence_idle_microseconds: {IDLE_US}"
)
OLDEST = (
    "oldest { max_candidate_sequences: 4 preferred_batch_size: [ 2 ] "
    "max_queue_delay_microseconds: 1000 } "
    f"control_input [ {_control('START', 'START')}, {_control('END', 'END')}, "
    f"{_control('READY', 'READY')}, {_control('CORRID', 'CORRID', 'TYPE_INT64')} ]"
)
STATE = """
state [ { input_name: "STATE_IN" output_name: "STATE_OUT" data_type: TYPE_INT32 dims: [ 1 ]
  initial_state { data_type: TYPE_INT32 dims: [ 1 ] zero_data: true name: "zero" } } ]
"""


# The python twin of the state model: the server hands it STATE_IN and keeps STATE_OUT.
PYTHON_STATE_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            state = pb_utils.get_input_tensor_by_name(request, "STATE_IN").as_numpy()
            total = (value + state).astype("int32")
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("OUTPUT", total), pb_utils.Tensor("STATE_OUT", total)]
                )
            )
        return responses
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("sequence")
    write_model(root, "seq_direct", _config("seq_direct", DIRECT), _ready_start_model())
    write_model(root, "seq_oldest", _config("seq_oldest", OLDEST), _corrid_model())
    write_model(root, "seq_state", _config("seq_state", STATE), _state_model())
    python_state = _config("seq_state_py", STATE).replace(
        'backend: "onnxruntime"', 'backend: "python"'
    )
    write_python_model(root, "seq_state_py", PYTHON_STATE_MODEL, python_state)
    one_slot = _config("seq_one_slot", DIRECT, max_batch_size=1)
    write_model(root, "seq_one_slot", one_slot, _ready_start_model())
    with ServerProcess([root]) as process:
        yield process


def _infer(server: ServerProcess, protocol: str, model: str, value: int, **sequence: object) -> int:
    data = np.full((1, 1), value, dtype=np.int32)
    if protocol == "grpc":
        client: object = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("INPUT", [1, 1], "INT32")
    else:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=10)
        tensor = httpclient.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(data)
    result = client.infer(model, [tensor], **sequence)  # type: ignore[attr-defined]
    return int(result.as_numpy("OUTPUT")[0, 0])


def _run_sequence(
    server: ServerProcess, protocol: str, model: str, sequence_id: int | str, base: int
) -> list[int]:
    outputs = []
    for step in range(8):
        outputs.append(
            _infer(
                server,
                protocol,
                model,
                base + step,
                sequence_id=sequence_id,
                sequence_start=step == 0,
                sequence_end=step == 7,
            )
        )
        time.sleep(0.001 * ((base + step) % 3))  # uneven pacing interleaves the threads
    return outputs


def _expected(model: str, sequence_id: int | str, base: int) -> list[int]:
    corrid = sequence_id if model == "seq_oldest" and isinstance(sequence_id, int) else 0
    return [
        base + step + (step == 0) + (corrid if step == 7 and model == "seq_oldest" else 0)
        for step in range(8)
    ]


def _ids(model: str) -> list[int | str]:
    # The oldest model's CORRID is INT64, so it takes integer ids only.
    return [11, 12, 13] if model == "seq_oldest" else [11, 12, str(uuid.uuid4())]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["seq_direct", "seq_oldest"])
def test_sequences_one_after_another(server: ServerProcess, protocol: str, model: str) -> None:
    for index, sequence_id in enumerate(_ids(model)):
        base = 100 * (index + 1)
        got = _run_sequence(server, protocol, model, sequence_id, base)
        assert got == _expected(model, sequence_id, base)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["seq_direct", "seq_oldest"])
def test_sequences_interleaved(server: ServerProcess, protocol: str, model: str) -> None:
    ids = _ids(model)
    results: dict[int, object] = {}

    def run(index: int) -> None:
        try:
            results[index] = _run_sequence(server, protocol, model, ids[index], 100 * (index + 1))
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for index, sequence_id in enumerate(ids):
        assert results[index] == _expected(model, sequence_id, 100 * (index + 1))


@pytest.mark.parametrize("model", ["seq_state", "seq_state_py"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_implicit_state_accumulates_and_restarts(
    server: ServerProcess, protocol: str, model: str
) -> None:
    for _ in range(2):  # the second START begins again from the initial state (zero)
        outputs = [
            _infer(
                server,
                protocol,
                model,
                value,
                sequence_id=77,
                sequence_start=value == 1,
                sequence_end=value == 4,
            )
            for value in (1, 2, 3, 4)
        ]
        assert outputs == [1, 3, 6, 10]


def test_idle_sequence_expires_and_frees_its_slot(server: ServerProcess) -> None:
    assert _infer(server, "grpc", "seq_one_slot", 5, sequence_id=41, sequence_start=True) == 6
    time.sleep(3 * IDLE_US / 1e6)
    with pytest.raises(InferenceServerException, match="must specify the START flag"):
        _infer(server, "grpc", "seq_one_slot", 5, sequence_id=41)
    # The only slot was freed: a new sequence runs at once instead of waiting in the backlog.
    got = _infer(server, "grpc", "seq_one_slot", 7, sequence_id=42, sequence_start=True)
    assert got == 8
    assert _infer(server, "http", "seq_one_slot", 7, sequence_id=42, sequence_end=True) == 7


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_errors(server: ServerProcess, protocol: str) -> None:
    with pytest.raises(InferenceServerException, match="must specify a non-zero or non-empty"):
        _infer(server, protocol, "seq_direct", 1)
    with pytest.raises(InferenceServerException, match="inference request for sequence 999 "):
        _infer(server, protocol, "seq_direct", 1, sequence_id=999)
    with pytest.raises(InferenceServerException, match="correlation ID"):
        _infer(server, protocol, "seq_oldest", 1, sequence_id="abc", sequence_start=True)
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("INPUT", [2, 1], "INT32")
    tensor.set_data_from_numpy(np.ones((2, 1), dtype=np.int32))
    with pytest.raises(InferenceServerException, match="must specify batch-size 1"):
        client.infer("seq_direct", [tensor], sequence_id=5, sequence_start=True)
