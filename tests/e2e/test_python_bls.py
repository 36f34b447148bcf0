"""BLS: python models calling the server's models with ``pb_utils.InferenceRequest.exec``.

Sync and async (``asyncio.gather``) calls to an ONNX model and another python model, a
decoupled call iterating a repeat model's responses, a call to an unknown model that
comes back as an error response, and load / unload / is_model_ready from a model
(explicit model control mode, as Triton requires).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from naiad.examples import onnx_models
from tests import python_models as models
from tests.python_models import write_python_model
from tests.repository import write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

CALLS = """
import numpy as np
import triton_python_backend_utils as pb_utils


def requests_for(x):
    ones = np.ones_like(x)
    return (
        pb_utils.InferenceRequest(
            model_name="identity", inputs=[pb_utils.Tensor("INPUT0", x)],
            requested_output_names=["OUTPUT0"], request_id="to-onnx",
        ),
        pb_utils.InferenceRequest(
            model_name="add_sub",
            inputs=[pb_utils.Tensor("INPUT0", x[None, :]), pb_utils.Tensor("INPUT1", ones[None, :])],
            requested_output_names=["OUTPUT0"],
        ),
    )


def answer(onnx, python):
    for response in (onnx, python):
        if response.has_error():
            return pb_utils.InferenceResponse(error=response.error())
    same = pb_utils.get_output_tensor_by_name(onnx, "OUTPUT0").as_numpy()
    plus = pb_utils.get_output_tensor_by_name(python, "OUTPUT0").as_numpy()[0]
    return pb_utils.InferenceResponse([pb_utils.Tensor("SAME", same), pb_utils.Tensor("PLUS", plus)])
"""

BLS_SYNC = (
    CALLS
    + """

class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if "missing" in request.parameters():
                missing = pb_utils.InferenceRequest(
                    model_name="no_such_model", inputs=[pb_utils.Tensor("INPUT0", x)],
                    requested_output_names=["OUTPUT0"],
                ).exec()
                assert missing.has_error()
                responses.append(pb_utils.InferenceResponse(error=missing.error()))
                continue
            onnx, python = requests_for(x)
            responses.append(answer(onnx.exec(), python.exec()))
        return responses
"""
)

BLS_ASYNC = (
    CALLS
    + """
import asyncio


class TritonPythonModel:
    async def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            onnx, python = requests_for(x)
            results = await asyncio.gather(onnx.async_exec(), python.async_exec())
            responses.append(answer(*results))
        return responses
"""
)

BLS_CONFIG = """
name: "{name}"
backend: "python"
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 4 ] }} ]
output [
  {{ name: "SAME" data_type: TYPE_FP32 dims: [ 4 ] }},
  {{ name: "PLUS" data_type: TYPE_FP32 dims: [ 4 ] }}
]
"""

BLS_DECOUPLED = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "IN")
            call = pb_utils.InferenceRequest(
                model_name="repeat", inputs=[values], requested_output_names=["OUT"]
            )
            seen = []
            for response in call.exec(decoupled=True):
                assert not response.has_error(), response.error().message()
                if response.output_tensors():  # the last one may be empty (final flag)
                    seen.append(int(pb_utils.get_output_tensor_by_name(response, "OUT").as_numpy()[0]))
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", np.array(seen, dtype=np.int32))]
            ))
        return responses
"""
BLS_DECOUPLED_CONFIG = """
name: "bls_decoupled"
backend: "python"
input [ { name: "IN" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ -1 ] } ]
"""

BLS_CONTROL = """
import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            params = json.loads(request.parameters())
            op, name = params["op"], params["model"]
            try:
                if op == "load":
                    pb_utils.load_model(name)
                elif op == "unload":
                    pb_utils.unload_model(name)
                ready = pb_utils.is_model_ready(name)
            except pb_utils.TritonModelException as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("READY", np.array([ready], dtype=bool))]
            ))
        return responses
"""
BLS_CONTROL_CONFIG = """
name: "bls_control"
backend: "python"
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "READY" data_type: TYPE_BOOL dims: [ 1 ] } ]
"""

ONNX_CONFIG = """
name: "NAME"
backend: "onnxruntime"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] } ]
"""

LOADED = ["identity", "spare", "add_sub", "repeat", "bls_sync", "bls_async"]
LOADED += ["bls_decoupled", "bls_control"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo: Path = tmp_path_factory.mktemp("bls")
    for name in ("identity", "spare"):
        config = ONNX_CONFIG.replace("NAME", name)
        write_model(repo, name, config, onnx_models.identity("FP32", [-1], batch=False))
    write_python_model(repo, "add_sub", models.ADD_SUB, models.ADD_SUB_CONFIG)
    write_python_model(repo, "repeat", models.REPEAT, models.REPEAT_CONFIG)
    write_python_model(repo, "bls_sync", BLS_SYNC, BLS_CONFIG.format(name="bls_sync"))
    write_python_model(repo, "bls_async", BLS_ASYNC, BLS_CONFIG.format(name="bls_async"))
    write_python_model(repo, "bls_decoupled", BLS_DECOUPLED, BLS_DECOUPLED_CONFIG)
    write_python_model(repo, "bls_control", BLS_CONTROL, BLS_CONTROL_CONFIG)
    args = ["--model-control-mode=explicit", *[f"--load-model={name}" for name in LOADED]]
    with ServerProcess([repo], *args) as process:
        yield process


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[grpcclient.InferenceServerClient]:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        yield client


def _input(name: str, array: np.ndarray) -> grpcclient.InferInput:
    datatype = "FP32" if array.dtype == np.float32 else "INT32"
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


X = np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)


@pytest.mark.parametrize("model", ["bls_sync", "bls_async"])
def test_bls_calls_an_onnx_and_a_python_model(
    client: grpcclient.InferenceServerClient, model: str
) -> None:
    result = client.infer(model, [_input("X", X)])
    np.testing.assert_array_equal(result.as_numpy("SAME"), X)
    np.testing.assert_array_equal(result.as_numpy("PLUS"), X + 1)


def test_async_bls_calls_overlap_across_requests(client: grpcclient.InferenceServerClient) -> None:
    # Many calls in flight from one worker at once, each answered by the right call.
    outcomes: list[object] = []
    for index in range(16):
        x = X + index
        client.async_infer(
            "bls_async",
            [_input("X", x)],
            callback=lambda result, error, x=x: outcomes.append(
                error or np.array_equal(result.as_numpy("PLUS"), x + 1)
            ),
        )
    deadline = 200
    while len(outcomes) < 16 and deadline:
        deadline -= 1
        __import__("time").sleep(0.05)
    assert outcomes == [True] * 16


def test_decoupled_bls_iterates_the_responses(client: grpcclient.InferenceServerClient) -> None:
    values = np.array([5, 8, 13], dtype=np.int32)
    result = client.infer("bls_decoupled", [_input("IN", values)])
    np.testing.assert_array_equal(result.as_numpy("OUT"), values)


def test_bls_to_an_unknown_model_is_an_error_response(
    client: grpcclient.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException, match="no_such_model"):
        client.infer("bls_sync", [_input("X", X)], parameters={"missing": True})
    # The model keeps serving.
    result = client.infer("bls_sync", [_input("X", X)])
    np.testing.assert_array_equal(result.as_numpy("PLUS"), X + 1)


def _control(client: grpcclient.InferenceServerClient, op: str, model: str) -> bool:
    x = np.zeros(1, dtype=np.float32)
    result = client.infer("bls_control", [_input("X", x)], parameters={"op": op, "model": model})
    return bool(result.as_numpy("READY")[0])


def test_load_unload_and_readiness_from_a_model(client: grpcclient.InferenceServerClient) -> None:
    assert _control(client, "ready", "spare") is True
    assert _control(client, "unload", "spare") is False
    assert not client.is_model_ready("spare")
    assert _control(client, "load", "spare") is True
    assert client.is_model_ready("spare")
    assert _control(client, "ready", "no_such_model") is False
