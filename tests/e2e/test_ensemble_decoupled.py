"""A decoupled step inside an ensemble streams its responses through the ensemble.

The python ``repeat`` model (one response per input value, from a thread) feeds a
python ``scale`` step; each of repeat's responses runs ``scale`` once, and the ensemble
streams each result over gRPC ``ModelStreamInfer`` and HTTP ``generate_stream``.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests import python_models as models
from tests.python_models import write_python_model
from tests.repository import write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

SCALE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() * 10)]
            )
            for r in requests
        ]
"""
SCALE_CONFIG = """
name: "scale"
backend: "python"
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
"""
# repeat -> scale; IDX comes straight from repeat, Y from scale.
ENSEMBLE_CONFIG = """
name: "repeat_scale"
platform: "ensemble"
input [ { name: "X" data_type: TYPE_INT32 dims: [ -1 ] } ]
output [
  { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "IDX" data_type: TYPE_UINT32 dims: [ 1 ] }
]
ensemble_scheduling { step [
  { model_name: "repeat" model_version: -1 input_map { key: "IN" value: "X" }
    output_map { key: "OUT" value: "repeated" } output_map { key: "IDX" value: "IDX" } },
  { model_name: "scale" model_version: -1 input_map { key: "IN" value: "repeated" }
    output_map { key: "OUT" value: "Y" } }
] }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root: Path = tmp_path_factory.mktemp("ensemble_decoupled")
    write_python_model(root, "repeat", models.REPEAT, models.REPEAT_CONFIG)
    write_python_model(root, "scale", SCALE, SCALE_CONFIG)
    write_model(root, "repeat_scale", ENSEMBLE_CONFIG, None)
    with ServerProcess([root]) as process:
        yield process


def _x(values: list[int]) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("X", [len(values)], "INT32")
    tensor.set_data_from_numpy(np.array(values, dtype=np.int32))
    return [tensor]


def test_decoupled_step_streams_n_responses_over_grpc(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer(
            "repeat_scale", _x([4, 7, 9]), request_id="e1", enable_empty_final_response=True
        )
        taken = [results.get(timeout=10) for _ in range(4)]
        with pytest.raises(queue.Empty):  # nothing after the final
            results.get(timeout=0.3)
    finally:
        client.stop_stream()
        client.close()
    assert [error for _, error in taken] == [None] * 4
    finals = [r.get_response().parameters["triton_final_response"].bool_param for r, _ in taken]
    assert finals == [False, False, False, True]
    assert {r.get_response().id for r, _ in taken} == {"e1"}
    # Each of repeat's responses ran scale once; IDX passes straight through.
    pairs = {(int(r.as_numpy("IDX")[0]), int(r.as_numpy("Y")[0])) for r, _ in taken[:3]}
    assert pairs == {(0, 40), (1, 70), (2, 90)}
    assert taken[3][0].get_response().outputs == []


def test_ensemble_with_decoupled_step_is_decoupled(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    config = client.get_model_config("repeat_scale").config
    assert config.model_transaction_policy.decoupled
    with pytest.raises(InferenceServerException):  # unary inference of a decoupled model
        client.infer("repeat_scale", _x([1]))
    stats = client.get_inference_statistics("scale").model_stats[0]
    assert stats.inference_stats.success.count >= 3  # once per response of repeat


def test_decoupled_step_streams_over_generate_stream(server: ServerProcess) -> None:
    connection = HTTPConnection(server.http_url)
    try:
        body = json.dumps({"X": [5, 6]}).encode()
        headers = {"Content-Type": "application/json"}
        connection.request("POST", "/v2/models/repeat_scale/generate_stream", body, headers)
        response = connection.getresponse()
        status, raw = response.status, response.read()
    finally:
        connection.close()
    assert status == 200, raw
    chunks = [c for c in raw.decode().split("\n\n") if c]
    events = [json.loads(chunk.removeprefix("data: ")) for chunk in chunks]
    assert sorted((e["IDX"], e["Y"]) for e in events) == [(0, 50), (1, 60)]
