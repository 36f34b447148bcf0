"""Cancellation: a client that goes away makes ``request.is_cancelled()`` true in the model.

A slow model polls ``is_cancelled()`` (and its response sender's) every 20 ms for up to
10 s and appends what it saw to a file named by a config parameter. The client cancels
a gRPC call (``CallContext.cancel()``) or drops its HTTP connection after 0.3 s; the
model must see it within a few seconds, through an ``async def execute`` (the worker's
loop delivers the cancel message) and a sync one (``is_cancelled()`` reads it from the
socket while ``execute`` holds the loop), and the server keeps serving.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.python_models import write_python_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

SLOW = """
import json
import time
{imports}
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.record = config["parameters"]["record"]["string_value"]

    {async_}def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            sender = request.get_response_sender()
            start = time.monotonic()
            cancelled = False
            while x[0] > 0 and time.monotonic() - start < 10.0:
                if request.is_cancelled():
                    cancelled = sender.is_cancelled()
                    break
                {sleep}(0.02)
            with open(self.record, "a") as f:
                f.write(f"{{request.request_id()}} {{cancelled}} {{time.monotonic() - start:.2f}}\\n")
            if cancelled:
                error = pb_utils.TritonError("cancelled", pb_utils.TritonError.CANCELLED)
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x)]))
        return responses
"""

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "X" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }} ]
parameters {{ key: "record" value {{ string_value: "{record}" }} }}
"""

MODELS = {
    "slow_async": {"imports": "import asyncio", "async_": "async ", "sleep": "await asyncio.sleep"},
    "slow_sync": {"imports": "", "async_": "", "sleep": "time.sleep"},
}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cancel-records")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, records: Path) -> Iterator[ServerProcess]:
    repo: Path = tmp_path_factory.mktemp("cancel")
    for name, parts in MODELS.items():
        record = records / f"{name}.txt"
        write_python_model(
            repo, name, SLOW.format(**parts), CONFIG.format(name=name, record=record)
        )
    with ServerProcess([repo]) as process:
        yield process


def _seen(records: Path, model: str, request_id: str, deadline_s: float = 8.0) -> list[str]:
    """The model's record line for ``request_id``, waiting for it to be written."""
    path = records / f"{model}.txt"
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if path.exists():
            for line in path.read_text().splitlines():
                fields = line.split()
                if fields and fields[0] == request_id:
                    return fields
        time.sleep(0.05)
    raise AssertionError(f"{model} recorded nothing for {request_id} within {deadline_s} s")


def _x(value: float) -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("X", [1], "FP32")
    tensor.set_data_from_numpy(np.full(1, value, np.float32))
    return [tensor]


class _Outcome:
    """The callback of an async gRPC call: records the error it ended with (None if none)."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.errors: list[Any] = []

    def __call__(self, result: Any, error: Any) -> None:
        self.errors.append(error)
        self.done.set()


def _still_serves(server: ServerProcess, model: str) -> None:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        result = client.infer(model, _x(0.0), request_id="after")
        assert result.as_numpy("Y").tolist() == [0.0]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_grpc_cancel_reaches_the_model(server: ServerProcess, records: Path, model: str) -> None:
    request_id = f"grpc-{model}"
    outcome = _Outcome()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        call = client.async_infer(model, _x(1.0), outcome, request_id=request_id)
        time.sleep(0.3)
        call.cancel()
        assert outcome.done.wait(5.0)
    assert outcome.errors[0] is not None  # the client sees its call cancelled
    _, cancelled, elapsed = _seen(records, model, request_id)
    assert cancelled == "True"  # request.is_cancelled() and sender.is_cancelled()
    assert float(elapsed) < 5.0
    _still_serves(server, model)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_http_disconnect_reaches_the_model(
    server: ServerProcess, records: Path, model: str
) -> None:
    request_id = f"http-{model}"
    body = json.dumps(
        {
            "id": request_id,
            "inputs": [{"name": "X", "shape": [1], "datatype": "FP32", "data": [1.0]}],
        }
    )
    host, port = server.http_url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request(
        "POST", f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"}
    )
    time.sleep(0.3)
    connection.close()  # drops the connection before the answer
    _, cancelled, elapsed = _seen(records, model, request_id)
    assert cancelled == "True"
    assert float(elapsed) < 5.0
    _still_serves(server, model)
    assert "Exception in ASGI application" not in server.log


def test_cancel_of_a_request_waiting_behind_a_running_one(
    server: ServerProcess, records: Path
) -> None:
    """A sync model's next request is handed to its worker while the last one runs; a
    cancel for it arrives before the worker takes it up and must still reach it."""
    model = "slow_sync"
    outcome = _Outcome()
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        first = client.async_infer(model, _x(1.0), lambda *_: None, request_id="running")
        time.sleep(0.3)
        second = client.async_infer(model, _x(1.0), outcome, request_id="waiting")
        time.sleep(0.3)
        second.cancel()
        assert outcome.done.wait(5.0)
        first.cancel()
    assert outcome.errors[0] is not None
    _seen(records, model, "running")
    _, cancelled, elapsed = _seen(records, model, "waiting")
    assert cancelled == "True"
    assert float(elapsed) < 1.0  # seen at once, not after polling for 10 s
    _still_serves(server, model)
