"""Triton python-backend models run unchanged by a real server, driven by tritonclient.

One server serves most models (HTTP and gRPC); separate ones run with shared memory
forced off, and for lifecycle order (which needs a shutdown). The custom backend
package is pip-installed into this environment for the module and removed after.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.client import HTTPConnection
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException

from tests import python_models as models
from tests.python_models import write_python_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

BACKEND_PACKAGE = "naiad-test-backend"


# -- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A pip-installed package publishing backend 'naiad_test_doubler' (entry point)."""
    root = tmp_path_factory.mktemp("backend_package")
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{BACKEND_PACKAGE}"
            version = "0.1.0"

            [project.entry-points."naiad.backends"]
            naiad_test_doubler = "naiad_test_backend:DoublerBackend"
            """
        )
    )
    (root / "naiad_test_backend.py").write_text(textwrap.dedent(DOUBLER_BACKEND))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", str(root)],
        check=True,
        cwd=root,
    )
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "-y", BACKEND_PACKAGE], check=True)


DOUBLER_BACKEND = """
    import os

    from naiad.backends.python.api import Backend, BackendError, Response


    def _log(line):
        path = os.environ.get("NAIAD_TEST_CALL_LOG")
        if path:
            with open(path, "a") as handle:
                handle.write(line + "\\n")


    class DoublerBackend(Backend):
        def initialize(self):
            _log("backend_initialize")

        def finalize(self):
            _log("backend_finalize")

        def auto_complete_config(self, config):
            if not config["input"]:
                config["input"] = [{"name": "IN", "data_type": "TYPE_FP32", "dims": [-1]}]
                config["output"] = [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [-1]}]
            return config

        def model_initialize(self, model):
            model.state = float(model.parameters.get("factor", "2"))
            _log(f"model_initialize {model.name}")

        def model_finalize(self, model):
            _log(f"model_finalize {model.name}")

        def instance_initialize(self, instance):
            _log(f"instance_initialize {instance.name}")

        def instance_finalize(self, instance):
            _log(f"instance_finalize {instance.name}")

        def instance_execute(self, instance, requests):
            _log(f"instance_execute {instance.name}")
            responses = []
            for request in requests:
                values = request.inputs["IN"]
                if (values < 0).any():
                    responses.append(Response(error=BackendError("negative input", "INVALID_ARG")))
                else:
                    responses.append(Response({"OUT": values * instance.model.state}))
            return responses
"""


def _python_based_backends(root: Path) -> Path:
    backends = root / "backends"
    (backends / "pybe").mkdir(parents=True)
    (backends / "pybe" / "model.py").write_text(
        textwrap.dedent(models.PYTHON_BASED_BACKEND.format(variant="model.py"))
    )
    (backends / "pybe" / "other.py").write_text(
        textwrap.dedent(models.PYTHON_BASED_BACKEND.format(variant="other.py"))
    )
    return backends


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("python_repository")
    repo = root / "models"
    write_python_model(repo, "add_sub", models.ADD_SUB, models.ADD_SUB_CONFIG)
    write_python_model(
        repo,
        "bytes_identity",
        models.IDENTITY,
        models.identity_config("bytes_identity", "TYPE_STRING"),
    )
    write_python_model(
        repo, "big_identity", models.IDENTITY, models.identity_config("big_identity", "TYPE_FP32")
    )
    write_python_model(repo, "auto_complete", models.AUTO_COMPLETE, None)
    write_python_model(repo, "value_errors", models.VALUE_ERRORS, models.VALUE_ERRORS_CONFIG)
    write_python_model(
        repo, "init_fails", models.INIT_FAILS, models.PID_CONFIG.replace("pid", "init_fails")
    )
    write_python_model(repo, "parameters", models.PARAMETERS, models.PARAMETERS_CONFIG)
    write_python_model(repo, "async_sleep", models.ASYNC_SLEEP, models.ASYNC_SLEEP_CONFIG)
    write_python_model(repo, "pid", models.PID, models.PID_CONFIG)
    requirements = write_python_model(
        repo,
        "requirements",
        models.REQUIREMENTS,
        models.REQUIREMENTS_CONFIG + "instance_group [ { count: 2 kind: KIND_CPU } ]\n",
    )
    (requirements / "requirements.txt").write_text("text-unidecode==1.3\n")
    for name in ("pbb_a", "pbb_b"):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(models.python_based_config(name, "pybe"))
    (repo / "pbb_runtime" / "1").mkdir(parents=True)
    (repo / "pbb_runtime" / "config.pbtxt").write_text(
        models.python_based_config("pbb_runtime", "pybe", 'runtime: "other.py"')
    )
    (repo / "custom" / "1").mkdir(parents=True)
    (repo / "custom" / "config.pbtxt").write_text(
        'name: "custom"\nbackend: "naiad_test_doubler"\n'
        'parameters { key: "factor" value: { string_value: "3" } }\n'
    )
    _python_based_backends(root)
    return repo


@pytest.fixture(scope="module")
def py_server(
    repository: Path, backend_package: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    cache = tmp_path_factory.mktemp("naiad_cache")
    process = ServerProcess(
        [repository],
        "--exit-on-error=false",
        f"--backend-directory={repository.parent / 'backends'}",
        # A low threshold, so the 4 MiB tensors below go through shared memory (memfd).
        env={"NAIAD_CACHE_DIR": str(cache), "NAIAD_PYTHON_SHM_THRESHOLD_BYTES": "65536"},
    )
    process.start(timeout_s=120)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def http(py_server: ServerProcess) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(py_server.http_url)


@pytest.fixture(scope="module")
def grpc(py_server: ServerProcess) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(py_server.grpc_url)


def _index(server: ServerProcess) -> dict[str, dict[str, str]]:
    connection = HTTPConnection(server.http_url, timeout=10)
    try:
        connection.request("POST", "/v2/repository/index", body=b"")
        return {entry["name"]: entry for entry in json.loads(connection.getresponse().read())}
    finally:
        connection.close()


def _http_input(name: str, array: np.ndarray, datatype: str) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def _grpc_input(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


# -- models run unchanged -----------------------------------------------------------


def test_add_sub_fp32_over_http_and_grpc(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    a = np.array([[1.5, 2, 3, 4]], dtype=np.float32)
    b = np.array([[0.5, 1, 1, 1]], dtype=np.float32)
    result = http.infer(
        "add_sub", [_http_input("INPUT0", a, "FP32"), _http_input("INPUT1", b, "FP32")]
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    answer = grpc.infer(
        "add_sub",
        [_grpc_input("INPUT0", a, "FP32"), _grpc_input("INPUT1", b, "FP32")],
        outputs=[grpcclient.InferRequestedOutput("OUTPUT1")],
    )
    np.testing.assert_array_equal(answer.as_numpy("OUTPUT1"), a - b)
    assert answer.as_numpy("OUTPUT0") is None  # only what was asked for


def test_bytes_identity_keeps_nul_and_non_utf8_bytes(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    values = np.array(
        [b"plain", b"nul\x00inside\x00", b"\xff\xfe\x80 not utf-8", b""], dtype=object
    )
    result = http.infer(
        "bytes_identity",
        [_http_input("INPUT0", values, "BYTES")],
        outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)],
    )
    assert list(result.as_numpy("OUTPUT0")) == list(values)
    answer = grpc.infer("bytes_identity", [_grpc_input("INPUT0", values, "BYTES")])
    assert list(answer.as_numpy("OUTPUT0")) == list(values)


def test_large_tensor_round_trip(http: httpclient.InferenceServerClient) -> None:
    # 4 MiB each way: well over the shared-memory threshold.
    values = np.random.default_rng(7).standard_normal(1 << 20).astype(np.float32)
    result = http.infer("big_identity", [_http_input("INPUT0", values, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), values)


def test_auto_complete_config_completes_a_model_without_config(
    http: httpclient.InferenceServerClient,
) -> None:
    config = http.get_model_config("auto_complete")
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 4
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("IN", "TYPE_INT32", [3])
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [
        ("OUT", "TYPE_INT32", [3])
    ]
    values = np.array([[1, 2, 3]], dtype=np.int32)
    result = http.infer("auto_complete", [_http_input("IN", values, "INT32")])
    np.testing.assert_array_equal(result.as_numpy("OUT"), values * 3)


def test_request_parameters_and_id_reach_the_model(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    one = np.array([1], dtype=np.int32)
    parameters = {"temperature": "hot", "count": 3, "flag": True}
    result = http.infer(
        "parameters", [_http_input("IN", one, "INT32")], request_id="req-7", parameters=parameters
    )
    seen = json.loads(result.as_numpy("OUT")[0])
    assert seen == {
        "parameters": parameters,
        "id": "req-7",
        "requested": ["OUT"],
        "flags": 0,
        "cancelled": False,
    }
    answer = grpc.infer(
        "parameters", [_grpc_input("IN", one, "INT32")], request_id="g1", parameters={"k": "v"}
    )
    assert json.loads(answer.as_numpy("OUT")[0])["parameters"] == {"k": "v"}


# -- errors -------------------------------------------------------------------------


def test_per_request_errors_mixed_with_good_responses(py_server: ServerProcess) -> None:
    async def run() -> list[object]:
        client = aiohttpclient.InferenceServerClient(py_server.http_url)
        try:

            async def one(value: int) -> object:
                tensor = aiohttpclient.InferInput("IN", [1], "INT32")
                tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
                try:
                    result = await client.infer("value_errors", [tensor])
                except InferenceServerException as exc:
                    return exc
                return int(result.as_numpy("OUT")[0])

            return list(await asyncio.gather(*(one(v) for v in (1, -2, 3, -4, 5, 13))))
        finally:
            await client.close()

    results = asyncio.run(run())
    assert results[0] == 2 and results[2] == 6 and results[4] == 10
    for index, value in ((1, -2), (3, -4)):
        error = results[index]
        assert isinstance(error, InferenceServerException)
        assert error.status() == "400"
        assert error.message() == f"negative input {value}"
    raised = results[5]
    assert isinstance(raised, InferenceServerException)
    assert raised.status() == "500"
    assert "ValueError: thirteen fails the whole batch" in str(raised.message())


def test_grpc_per_request_error_code(grpc: grpcclient.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        grpc.infer("value_errors", [_grpc_input("IN", np.array([-1], dtype=np.int32), "INT32")])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert info.value.message() == "negative input -1"


def test_initialize_failure_makes_the_model_unavailable(
    py_server: ServerProcess, http: httpclient.InferenceServerClient
) -> None:
    entry = _index(py_server)["init_fails"]
    assert entry["state"] == "UNAVAILABLE"
    assert "ValueError: cannot read the weights of init_fails" in entry["reason"]
    assert not http.is_model_ready("init_fails")


# -- concurrency and crashes ----------------------------------------------------------


def test_async_execute_runs_requests_of_one_instance_concurrently(
    py_server: ServerProcess,
) -> None:
    async def run() -> float:
        client = aiohttpclient.InferenceServerClient(py_server.http_url)
        try:
            tensor = aiohttpclient.InferInput("IN", [1], "INT32")
            tensor.set_data_from_numpy(np.array([0], dtype=np.int32))
            await client.infer("async_sleep", [tensor])  # warm the connection pool
            start = time.monotonic()
            await asyncio.gather(*(client.infer("async_sleep", [tensor]) for _ in range(8)))
            return time.monotonic() - start
        finally:
            await client.close()

    elapsed = asyncio.run(run())
    # Sequential would be 8 x 200 ms = 1.6 s.
    assert elapsed < 0.8, f"8 requests took {elapsed:.2f}s"


def _pid(client: httpclient.InferenceServerClient, value: int = 0) -> int:
    result = client.infer("pid", [_http_input("IN", np.array([value], dtype=np.int32), "INT32")])
    return int(result.as_numpy("PID")[0])


def test_sigkill_of_a_worker_fails_in_flight_requests_and_restarts(
    py_server: ServerProcess, http: httpclient.InferenceServerClient
) -> None:
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}

    def other_model() -> None:
        client = httpclient.InferenceServerClient(py_server.http_url)
        a = np.ones((1, 4), dtype=np.float32)
        while not stop.is_set():
            try:
                client.infer(
                    "add_sub", [_http_input("INPUT0", a, "FP32"), _http_input("INPUT1", a, "FP32")]
                )
                counts["ok"] += 1
            except InferenceServerException:
                counts["failed"] += 1

    background = threading.Thread(target=other_model)
    background.start()
    try:
        old_pid = _pid(http)
        in_flight: dict[str, object] = {}

        def slow_request() -> None:
            client = httpclient.InferenceServerClient(py_server.http_url, network_timeout=30)
            start = time.monotonic()
            try:
                _pid(client, value=1)  # the model sleeps on 1
            except InferenceServerException as exc:
                in_flight["error"] = exc
            in_flight["elapsed"] = time.monotonic() - start

        requester = threading.Thread(target=slow_request)
        requester.start()
        time.sleep(0.5)
        os.kill(old_pid, signal.SIGKILL)
        requester.join(timeout=10)
        error = in_flight.get("error")
        assert isinstance(error, InferenceServerException)
        assert error.status() == "503"
        assert f"(pid {old_pid}) was killed by signal 9 (SIGKILL)" in str(error.message())
        assert float(in_flight["elapsed"]) < 2.0  # type: ignore[arg-type]

        deadline = time.monotonic() + 30
        while not http.is_model_ready("pid") and time.monotonic() < deadline:
            time.sleep(0.05)
        new_pid = _pid(http)
        assert new_pid != old_pid
        time.sleep(0.3)  # the other model keeps serving meanwhile
    finally:
        stop.set()
        background.join()
    assert counts["failed"] == 0 and counts["ok"] > 0
    if shm_before:
        assert set(os.listdir("/dev/shm")) - shm_before == set()
    assert "restarted (worker pid" in py_server.log


# -- environments and backends ---------------------------------------------------------


@pytest.mark.pypi
def test_requirements_txt_installs_a_package_from_pypi(
    py_server: ServerProcess, http: httpclient.InferenceServerClient
) -> None:
    """Needs PyPI: the model imports text-unidecode from its requirements.txt."""
    assert _index(py_server)["requirements"]["state"] == "READY", _index(py_server)["requirements"]
    text = np.array(["Ünïcödé".encode()], dtype=object)
    result = http.infer(
        "requirements",
        [_http_input("IN", text, "BYTES")],
        outputs=[httpclient.InferRequestedOutput("OUT", binary_data=True)],
    )
    assert list(result.as_numpy("OUT")) == [b"Unicode"]
    assert py_server.log.count("building virtual environment") == 1
    assert "using the cached virtual environment" in py_server.log  # the second instance


def test_python_based_backend_serves_two_models(http: httpclient.InferenceServerClient) -> None:
    one = np.array([1], dtype=np.int32)
    for name in ("pbb_a", "pbb_b"):
        result = http.infer(name, [_http_input("IN", one, "INT32")])
        assert result.as_numpy("OUT")[0] == f"model.py:{name}:1".encode()


def test_runtime_picks_another_file(http: httpclient.InferenceServerClient) -> None:
    result = http.infer("pbb_runtime", [_http_input("IN", np.array([1], dtype=np.int32), "INT32")])
    assert result.as_numpy("OUT")[0] == b"other.py:pbb_runtime:1"


def test_installed_backend_package_serves_a_model_by_name(
    http: httpclient.InferenceServerClient,
) -> None:
    config = http.get_model_config("custom")
    assert config["backend"] == "naiad_test_doubler"
    assert [t["name"] for t in config["input"]] == ["IN"]
    values = np.array([1.0, 2.5], dtype=np.float32)
    result = http.infer("custom", [_http_input("IN", values, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUT"), values * 3)
    with pytest.raises(InferenceServerException) as info:
        http.infer("custom", [_http_input("IN", -values, "FP32")])
    assert info.value.status() == "400" and info.value.message() == "negative input"


# -- other servers ----------------------------------------------------------------------


def test_same_results_with_shared_memory_off(
    repository: Path, http: httpclient.InferenceServerClient, tmp_path: Path
) -> None:
    repo = tmp_path / "models"
    for name in ("add_sub", "bytes_identity", "big_identity"):
        (repo / name / "1").mkdir(parents=True)
        for relative in ("config.pbtxt", "1/model.py"):
            (repo / name / relative).write_bytes((repository / name / relative).read_bytes())
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    values = np.array([b"a\x00b", b"\xff"], dtype=object)
    big = np.arange(1 << 18, dtype=np.float32)

    def run(client: httpclient.InferenceServerClient) -> list[np.ndarray]:
        add = client.infer(
            "add_sub", [_http_input("INPUT0", a, "FP32"), _http_input("INPUT1", a, "FP32")]
        )
        out = [add.as_numpy("OUTPUT0"), add.as_numpy("OUTPUT1")]
        raw = client.infer(
            "bytes_identity",
            [_http_input("INPUT0", values, "BYTES")],
            outputs=[httpclient.InferRequestedOutput("OUTPUT0", binary_data=True)],
        )
        out.append(raw.as_numpy("OUTPUT0"))
        out.append(
            client.infer("big_identity", [_http_input("INPUT0", big, "FP32")]).as_numpy("OUTPUT0")
        )
        return out

    with ServerProcess([repo], env={"NAIAD_PYTHON_SHM": "0"}) as server:
        without = run(httpclient.InferenceServerClient(server.http_url))
    with_shm = run(http)
    for left, right in zip(without, with_shm, strict=True):
        assert list(left.reshape(-1)) == list(right.reshape(-1))
    np.testing.assert_array_equal(without[3], big)


def test_lifecycle_hooks_run_in_tritons_order(tmp_path: Path, backend_package: None) -> None:
    repo = tmp_path / "models"
    (repo / "custom" / "1").mkdir(parents=True)
    (repo / "custom" / "config.pbtxt").write_text(
        'name: "custom"\nbackend: "naiad_test_doubler"\n'
        "instance_group [ { count: 2 kind: KIND_CPU } ]\n"
    )
    backends = _python_based_backends(tmp_path)
    calls = tmp_path / "calls.log"
    (repo / "pbb" / "1").mkdir(parents=True)
    (repo / "pbb" / "config.pbtxt").write_text(
        models.python_based_config(
            "pbb", "pybe", f'parameters {{ key: "CALL_LOG" value: {{ string_value: "{calls}" }} }}'
        )
    )
    server = ServerProcess(
        [repo], f"--backend-directory={backends}", env={"NAIAD_TEST_CALL_LOG": str(calls)}
    )
    with server:
        client = httpclient.InferenceServerClient(server.http_url)
        client.infer("custom", [_http_input("IN", np.ones(2, dtype=np.float32), "FP32")])
        client.infer("pbb", [_http_input("IN", np.array([1], dtype=np.int32), "INT32")])
    lines = calls.read_text().splitlines()
    custom = [line for line in lines if not line.startswith("pbb ")]
    assert custom[:2] == ["backend_initialize", "model_initialize custom"]
    # Triton's names: group "custom_0", its instances "custom_0_0" and "custom_0_1".
    assert sorted(custom[2:4]) == [
        "instance_initialize custom_0_0",
        "instance_initialize custom_0_1",
    ]
    assert custom[4].startswith("instance_execute custom_")
    assert sorted(custom[5:7]) == ["instance_finalize custom_0_0", "instance_finalize custom_0_1"]
    assert custom[7:] == ["model_finalize custom", "backend_finalize"]
    assert [line for line in lines if line.startswith("pbb ")] == [
        "pbb initialize pbb_0",
        "pbb execute",
        "pbb finalize",
    ]
