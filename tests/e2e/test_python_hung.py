"""Hung python workers (``naiad_execute_timeout_s``): detected, failed clearly, restarted.

A model whose ``execute`` sleeps for an hour on input 1 runs under a one-second execute
timeout; a second python model is served at the same time and must see no errors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.python_models import ADD_SUB, ADD_SUB_CONFIG, write_python_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

HANG = """
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            if int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]) == 1:
                time.sleep(3600)  # a hung model
            pid = np.array([os.getpid()], dtype=np.int64)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("PID", pid)]))
        return responses
"""
HANG_CONFIG = """
name: "hang"
backend: "python"
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "PID" data_type: TYPE_INT64 dims: [ 1 ] } ]
parameters { key: "naiad_execute_timeout_s" value: { string_value: "1" } }
"""
BAD_TIMEOUT_CONFIG = """
name: "bad_timeout"
backend: "python"
input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "PID" data_type: TYPE_INT64 dims: [ 1 ] } ]
parameters { key: "naiad_execute_timeout_s" value: { string_value: "soon" } }
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("hung")
    write_python_model(root, "hang", HANG, HANG_CONFIG)
    write_python_model(root, "bad_timeout", HANG, BAD_TIMEOUT_CONFIG)
    write_python_model(root, "add_sub", ADD_SUB, ADD_SUB_CONFIG)
    with ServerProcess([root], "--exit-on-error=false", "--strict-readiness=false") as process:
        yield process


def _pid(client: grpcclient.InferenceServerClient, value: int = 0) -> int:
    tensor = grpcclient.InferInput("IN", [1], "INT32")
    tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
    result = client.infer("hang", [tensor])
    return int(result.as_numpy("PID")[0])


def test_hung_execute_fails_with_unavailable_and_the_instance_restarts(
    server: ServerProcess,
) -> None:
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}

    def other_model() -> None:
        client = httpclient.InferenceServerClient(server.http_url)
        a = np.ones((1, 4), dtype=np.float32)
        inputs = [httpclient.InferInput(n, [1, 4], "FP32") for n in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(a)
        while not stop.is_set():
            try:
                client.infer("add_sub", inputs)
                counts["ok"] += 1
            except InferenceServerException:
                counts["failed"] += 1

    background = threading.Thread(target=other_model)
    background.start()
    try:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        old_pid = _pid(client)
        start = time.monotonic()
        with pytest.raises(InferenceServerException) as caught:
            _pid(client, value=1)
        elapsed = time.monotonic() - start
        assert caught.value.status() == "StatusCode.UNAVAILABLE"
        message = str(caught.value.message())
        assert "execute did not finish within 1.0s (naiad_execute_timeout_s)" in message
        assert f"worker (pid {old_pid}) was killed" in message
        assert 0.9 < elapsed < 5.0
        # Requests sent during the restart wait for the new worker.
        new_pid = _pid(client)
        assert new_pid != old_pid
        assert client.is_model_ready("hang")
    finally:
        stop.set()
        background.join()
    assert counts["failed"] == 0 and counts["ok"] > 0
    assert "restarted (worker pid" in server.log


def test_a_bad_execute_timeout_is_a_clear_load_error(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["bad_timeout"]["state"] == "UNAVAILABLE"
    assert (
        "'naiad_execute_timeout_s' must be a number of seconds >= 0, got 'soon'"
        in (index["bad_timeout"]["reason"])
    )
