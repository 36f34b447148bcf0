"""Sequences interleaved on one gRPC ``ModelStreamInfer`` stream, and python sequence models
keyed by string correlation ids, against a real server with the real tritonclient.

The ONNX models are those of ``test_sequence.py`` (READY x (INPUT + START) with the direct
strategy; READY x (INPUT + START + END x CORRID) with oldest and an INT64 CORRID). A python
twin of the oldest model takes a STRING CORRID, so a UUID sequence id runs there; a python
accumulator keeps one running total per ``request.correlation_id()``.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.e2e.test_sequence import (
    DIRECT,
    OLDEST,
    _config,
    _corrid_model,
    _expected,
    _ready_start_model,
)
from tests.python_models import write_python_model
from tests.repository import write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

# The oldest model with a STRING CORRID: the CORRID's weight is the sum of its UTF-8 bytes.
# It also checks that pb_utils reports the same id as request.correlation_id().
OLDEST_STRING = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            get = lambda name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            corrid = get("CORRID").reshape(-1)[0]
            corrid = corrid.decode() if isinstance(corrid, bytes) else str(corrid)
            if request.correlation_id() != corrid:
                error = pb_utils.TritonError(f"{request.correlation_id()!r} != {corrid!r}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            weight = sum(corrid.encode())
            out = get("READY") * (get("INPUT") + get("START") + get("END") * weight)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", out.astype(np.int32))])
            )
        return responses
"""
OLDEST_STRING_CONFIG = _config(
    "seq_oldest_str", OLDEST.replace("TYPE_INT64", "TYPE_STRING")
).replace('backend: "onnxruntime"', 'backend: "python"')

# One running total per string correlation id, reset at START and dropped at END (flags).
ACCUMULATOR = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.totals = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            key, flags = request.correlation_id(), request.flags()
            if not isinstance(key, str):
                error = pb_utils.TritonError(f"expected a string id, got {key!r}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            if flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START:
                self.totals[key] = 0
            value = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            self.totals[key] += int(value.sum())
            total = np.array([[self.totals[key]]], dtype=np.int32)
            if flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END:
                del self.totals[key]
            live = np.array([[len(self.totals)]], dtype=np.int32)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUTPUT", total), pb_utils.Tensor("LIVE", live)]
            ))
        return responses
"""
ACCUMULATOR_CONFIG = """
name: "accumulator"
backend: "python"
max_batch_size: 4
input [ { name: "INPUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [
  { name: "OUTPUT" data_type: TYPE_INT32 dims: [ 1 ] },
  { name: "LIVE" data_type: TYPE_INT32 dims: [ 1 ] }
]
instance_group [ { kind: KIND_CPU count: 1 } ]
sequence_batching { max_sequence_idle_microseconds: 5000000 }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("sequence_stream")
    write_model(root, "seq_direct", _config("seq_direct", DIRECT), _ready_start_model())
    write_model(root, "seq_oldest", _config("seq_oldest", OLDEST), _corrid_model())
    write_python_model(root, "seq_oldest_str", OLDEST_STRING, OLDEST_STRING_CONFIG)
    write_python_model(root, "accumulator", ACCUMULATOR, ACCUMULATOR_CONFIG)
    with ServerProcess([root]) as process:
        yield process


def _input(value: int) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput("INPUT", [1, 1], "INT32")
    tensor.set_data_from_numpy(np.full((1, 1), value, dtype=np.int32))
    return tensor


def _stream_all(
    server: ServerProcess, requests: list[tuple[str, int | str, int, int]]
) -> dict[str, Any]:
    """Send (model, sequence id, step, value) requests on one stream; results by request id."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for model, sequence_id, step, value in requests:
            client.async_stream_infer(
                model,
                [_input(value)],
                request_id=f"{sequence_id}/{step}",
                sequence_id=sequence_id,
                sequence_start=step == 0,
                sequence_end=step == 7,
            )
        taken = [results.get(timeout=20) for _ in requests]
    finally:
        client.stop_stream()
        client.close()
    assert [error for _, error in taken] == [None] * len(requests)
    by_id = {result.get_response().id: result for result, _ in taken}
    assert len(by_id) == len(requests)  # every response carries its own request id
    return by_id


def _interleaved(models: list[str], ids: list[int | str]) -> list[tuple[str, int | str, int, int]]:
    """Step s of every sequence before step s + 1 of any: round-robin over the sequences."""
    return [
        (model, sequence_id, step, 100 * (index + 1) + step)
        for step in range(8)
        for index, (model, sequence_id) in enumerate(zip(models, ids, strict=True))
    ]


def test_direct_sequences_interleaved_on_one_stream(server: ServerProcess) -> None:
    ids: list[int | str] = [21, 22, str(uuid.uuid4())]
    by_id = _stream_all(server, _interleaved(["seq_direct"] * 3, ids))
    for index, sequence_id in enumerate(ids):
        got = [int(by_id[f"{sequence_id}/{s}"].as_numpy("OUTPUT")[0, 0]) for s in range(8)]
        assert got == _expected("seq_direct", sequence_id, 100 * (index + 1))


def test_oldest_sequences_interleaved_on_one_stream(server: ServerProcess) -> None:
    # Integer ids go to the INT64-CORRID model, the UUID to its STRING-CORRID twin.
    text = str(uuid.uuid4())
    ids: list[int | str] = [31, 32, text]
    models = ["seq_oldest", "seq_oldest", "seq_oldest_str"]
    by_id = _stream_all(server, _interleaved(models, ids))
    for index, sequence_id in enumerate(ids):
        base = 100 * (index + 1)
        got = [int(by_id[f"{sequence_id}/{s}"].as_numpy("OUTPUT")[0, 0]) for s in range(8)]
        if isinstance(sequence_id, str):
            want = [base + s + (s == 0) + (sum(text.encode()) if s == 7 else 0) for s in range(8)]
        else:
            want = _expected("seq_oldest", sequence_id, base)
        assert got == want


def test_python_accumulator_keyed_by_string_correlation_id(server: ServerProcess) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for _ in range(2):  # a second round restarts every total at START
        by_id = _stream_all(server, _interleaved(["accumulator"] * 3, list(ids)))
        for index, sequence_id in enumerate(ids):
            base = 100 * (index + 1)
            got = [int(by_id[f"{sequence_id}/{s}"].as_numpy("OUTPUT")[0, 0]) for s in range(8)]
            assert got == [sum(base + k for k in range(s + 1)) for s in range(8)]
        # END dropped each total: after the last END no sequence is live in the model.
        last = [int(by_id[f"{sequence_id}/7"].as_numpy("LIVE")[0, 0]) for sequence_id in ids]
        assert min(last) == 0
