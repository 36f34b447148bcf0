"""Start-up with broken models, readiness, and graceful shutdown of a real server process."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from naiad.examples import onnx_models
from tests.repository import simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def broken_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("broken")
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    write_model(root, "bad_config", 'name: "bad_config"\nmax_batch_size: eight\n', None)
    write_model(
        root, "corrupt_onnx", simple_config("corrupt_onnx", "INT32"), b"this is not an onnx file"
    )
    return root


def _index(server: ServerProcess) -> list[dict[str, str]]:
    connection = http.client.HTTPConnection(server.http_url, timeout=10)
    try:
        connection.request("POST", "/v2/repository/index", body=b"")
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def test_broken_models_fail_startup_by_default(broken_repository: Path) -> None:
    server = ServerProcess([broken_repository]).start(wait_ready=False)
    try:
        code = server.wait_exit(timeout_s=60)
    finally:
        server.stop()
    assert code == 1
    assert "error: creating server: Internal - failed to load all models" in server.log
    assert "'bad_config'" in server.log
    assert "'corrupt_onnx'" in server.log


def test_broken_models_with_exit_on_error_false(broken_repository: Path) -> None:
    with ServerProcess([broken_repository], "--exit-on-error=false") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_server_live()
        assert not client.is_server_ready()  # strict readiness: not every model is ready
        assert client.is_model_ready("simple")
        assert not client.is_model_ready("bad_config")
        assert not client.is_model_ready("corrupt_onnx")
        states = {entry["name"]: entry for entry in _index(server)}
        assert states["simple"]["state"] == "READY"
        assert states["bad_config"]["state"] == "UNAVAILABLE"
        assert "config.pbtxt" in states["bad_config"]["reason"]
        assert "max_batch_size" in states["bad_config"]["reason"]
        assert states["corrupt_onnx"]["state"] == "UNAVAILABLE"
        assert "failed to load ONNX model" in states["corrupt_onnx"]["reason"]
        a = np.ones((1, 16), dtype=np.int32)
        inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(a)
        np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a * 2)
        with pytest.raises(Exception, match="has no available versions"):
            client.infer("corrupt_onnx", inputs)


def test_strict_readiness_false(broken_repository: Path) -> None:
    with ServerProcess(
        [broken_repository], "--exit-on-error=false", "--strict-readiness=false"
    ) as server:
        assert httpclient.InferenceServerClient(server.http_url).is_server_ready()


@pytest.fixture(scope="module")
def slow_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("slow")
    config = """
name: "slow"
backend: "onnxruntime"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1, 512 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1, 512 ] } ]
"""
    write_model(root, "slow", config, onnx_models.slow_matmul(width=512, layers=64))
    return root


def test_sigterm_finishes_in_flight_requests_then_exits_zero(slow_repository: Path) -> None:
    server = ServerProcess([slow_repository], "--exit-timeout-secs=60").start()
    rows = np.random.default_rng(0).standard_normal((3000, 512)).astype(np.float32)
    results: dict[str, object] = {}

    def http_call() -> None:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
        tensor = httpclient.InferInput("INPUT0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        try:
            results["http"] = client.infer("slow", [tensor]).as_numpy("OUTPUT0")
        except Exception as exc:
            results["http"] = exc

    def grpc_call() -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("INPUT0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        try:
            results["grpc"] = client.infer("slow", [tensor], client_timeout=120).as_numpy("OUTPUT0")
        except Exception as exc:
            results["grpc"] = exc

    try:
        threads = [threading.Thread(target=f) for f in (http_call, grpc_call)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # both requests are now in flight (one runs, one waits for the instance)
        server.terminate(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=120)
        code = server.wait_exit(timeout_s=120)
    finally:
        server.stop()
    assert code == 0, server.log
    assert isinstance(results["http"], np.ndarray), results["http"]
    assert isinstance(results["grpc"], np.ndarray), results["grpc"]
    assert results["http"].shape == rows.shape
    np.testing.assert_allclose(results["http"], results["grpc"])
    # The server refused new work once the signal arrived.
    with pytest.raises(OSError):
        http.client.HTTPConnection(server.http_url, timeout=2).connect()
