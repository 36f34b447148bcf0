"""Model management against a real server: control modes, the repository API,
versions, reloads under load, warmup and parallel loading."""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from naiad.examples import onnx_models
from tests.repository import identity_config, simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


def _simple_inputs(value: int = 1) -> list[httpclient.InferInput]:
    a = np.full((1, 16), value, dtype=np.int32)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    return inputs


def _post(server: ServerProcess, path: str, body: object) -> tuple[int, object]:
    connection = http.client.HTTPConnection(server.http_url, timeout=60)
    try:
        connection.request("POST", path, body=json.dumps(body).encode())
        response = connection.getresponse()
        payload = response.read()
        return response.status, (json.loads(payload) if payload else None)
    finally:
        connection.close()


# -- explicit mode -------------------------------------------------------------------


@pytest.fixture(scope="module")
def explicit_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explicit")
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    write_model(root, "other", simple_config("other", "INT32"), onnx_models.add_sub("INT32"))
    write_model(
        root, "identity", identity_config("identity", "FP32"), onnx_models.identity("FP32", [-1])
    )
    return root


@pytest.fixture(scope="module")
def explicit_server(explicit_repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        [explicit_repository], "--model-control-mode=explicit", "--load-model=simple"
    ) as server:
        yield server


def test_index_lists_loaded_and_unloaded_models(explicit_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(explicit_server.http_url)
    index = {entry["name"]: entry for entry in client.get_model_repository_index()}
    assert index["simple"] == {"name": "simple", "version": "1", "state": "READY"}
    assert index["other"] == {"name": "other"}  # in the repository, never loaded
    status, ready_only = _post(explicit_server, "/v2/repository/index", {"ready": True})
    assert status == 200
    assert isinstance(ready_only, list)
    assert [entry["name"] for entry in ready_only] == ["simple"]
    assert client.is_server_ready()  # models not loaded on purpose do not count


def test_load_infer_unload(explicit_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(explicit_server.http_url)
    assert not client.is_model_ready("other")
    client.load_model("other")
    assert client.is_model_ready("other")
    result = client.infer("other", _simple_inputs(2))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 4, np.int32))
    client.unload_model("other")
    assert not client.is_model_ready("other")
    with pytest.raises(InferenceServerException, match="has no available versions"):
        client.infer("other", _simple_inputs())
    index = {entry["name"]: entry for entry in client.get_model_repository_index()}
    assert index["other"]["state"] == "UNAVAILABLE"
    assert index["other"]["reason"] == "unloaded"
    # Over gRPC too.
    grpc = grpcclient.InferenceServerClient(explicit_server.grpc_url)
    grpc.load_model("other")
    assert grpc.is_model_ready("other")
    states = {m.name: m.state for m in grpc.get_model_repository_index().models}
    assert states["other"] == "READY"
    grpc.unload_model("other", unload_dependents=True)
    assert not grpc.is_model_ready("other")


@pytest.mark.parametrize("max_batch_size", [16, "16"])
def test_load_with_config_override(explicit_server: ServerProcess, max_batch_size: object) -> None:
    client = httpclient.InferenceServerClient(explicit_server.http_url)
    config = json.loads(json.dumps(client.get_model_config("simple")))
    config["max_batch_size"] = max_batch_size  # protobuf JSON also takes the string form
    client.load_model("simple", config=json.dumps(config))
    assert client.get_model_config("simple")["max_batch_size"] == 16
    a = np.ones((12, 16), dtype=np.int32)
    inputs = [httpclient.InferInput(n, [12, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a * 2)
    client.load_model("simple")  # back to config.pbtxt
    assert client.get_model_config("simple")["max_batch_size"] == 8


def test_load_with_file_override(explicit_server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(explicit_server.http_url)
    config = json.dumps(
        {
            "name": "from_files",
            "backend": "onnxruntime",
            "max_batch_size": 4,
            "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
            "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        }
    )
    files = {"file:1/model.onnx": onnx_models.identity("FP32", [-1])}
    client.load_model("from_files", config=config, files=files)
    tensor = httpclient.InferInput("INPUT0", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    out = client.infer("from_files", [tensor]).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(out, [[1.0, 2.0, 3.0]])
    client.unload_model("from_files")


@pytest.mark.parametrize(
    ("name", "parameters", "text"),
    [
        ("simple", {"config": "{not json"}, "failed to load"),
        ("nope", {}, "failed to load 'nope', failed to poll from model repository"),
        ("simple", {"file:1/model.onnx": base64.b64encode(b"x").decode()}, "must be provided"),
        (
            "simple",
            {"config": "{}", "file:../../etc/x": base64.b64encode(b"x").decode()},
            "invalid override file path",
        ),
        (
            "simple",
            {"config": "{}", "file:/etc/x": base64.b64encode(b"x").decode()},
            "invalid override file path",
        ),
        (
            "simple",
            {"config": "{}", f"file:1/{'a' * 256}": base64.b64encode(b"x").decode()},
            "longer than 255 characters",
        ),
        ("simple", {"config": "{}", "file:1/model.onnx": "%%%"}, "invalid base64"),
        (
            "simple",
            {
                "config": json.dumps({"backend": "onnxruntime", "max_batch_size": 1}),
                "file:1/model.onnx": base64.b64encode(b"x").decode(),
            },
            "failed to load ONNX model simple/1/model.onnx",
        ),
        ("a;touch%20x", {}, "invalid model name"),
    ],
    ids=[
        "malformed-config",
        "unknown-model",
        "files-without-config",
        "dot-dot",
        "absolute",
        "long-name",
        "bad-base64",
        "override-without-outputs",
        "bad-model-name",
    ],
)
def test_bad_loads_are_refused_and_the_server_keeps_serving(
    explicit_server: ServerProcess, name: str, parameters: dict[str, str], text: str
) -> None:
    status, body = _post(
        explicit_server, f"/v2/repository/models/{name}/load", {"parameters": parameters}
    )
    assert status == 400, body
    assert isinstance(body, dict)
    assert text in body["error"]
    assert "/tmp" not in body["error"]  # no internal paths
    client = httpclient.InferenceServerClient(explicit_server.http_url)
    assert client.is_server_live()
    np.testing.assert_array_equal(
        client.infer("simple", _simple_inputs(3)).as_numpy("OUTPUT0"), np.full((1, 16), 6)
    )


def test_load_is_refused_outside_explicit_mode(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException) as info:
        client.load_model("simple")
    assert info.value.status() == "503"
    assert "explicit model load / unload is not allowed" in info.value.message()
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as info:
        grpc.unload_model("simple")
    assert info.value.status() == "StatusCode.UNAVAILABLE"
    assert client.is_model_ready("simple")


# -- reload under load -----------------------------------------------------------------


def test_reload_ten_times_under_load_drops_nothing(tmp_path: Path) -> None:
    write_model(tmp_path, "live", simple_config("live", "INT32"), onnx_models.add_sub("INT32"))
    with ServerProcess([tmp_path], "--model-control-mode=explicit", "--load-model=live") as server:
        stop = threading.Event()
        failures: list[str] = []
        versions_seen: list[set[str]] = [set() for _ in range(8)]
        counts = [0] * 8

        def client_loop(index: int) -> None:
            client = httpclient.InferenceServerClient(server.http_url)
            while not stop.is_set():
                try:
                    result = client.infer("live", _simple_inputs(index))
                    expected = np.full((1, 16), 2 * index, np.int32)
                    if not np.array_equal(result.as_numpy("OUTPUT0"), expected):
                        failures.append("wrong result")
                    versions_seen[index].add(result.get_response()["model_version"])
                    counts[index] += 1
                except Exception as exc:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        control = httpclient.InferenceServerClient(server.http_url)
        try:
            for version in range(2, 12):
                (tmp_path / "live" / str(version)).mkdir()
                (tmp_path / "live" / str(version) / "model.onnx").write_bytes(
                    onnx_models.add_sub("INT32")
                )
                control.load_model("live")
                assert control.get_model_metadata("live")["versions"] == [str(version)]
        finally:
            time.sleep(0.3)
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert failures == []
        assert sum(counts) > 80  # the clients really ran throughout
        assert all("11" in seen for seen in versions_seen)  # everyone switched to the new one
        assert any(len(seen) > 1 for seen in versions_seen)


# -- poll mode -----------------------------------------------------------------------


def _wait_for(predicate, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_poll_mode_follows_versions_and_keeps_serving_on_a_broken_edit(tmp_path: Path) -> None:
    model_dir = write_model(
        tmp_path, "polled", simple_config("polled", "INT32"), onnx_models.add_sub("INT32")
    )
    with ServerProcess(
        [tmp_path], "--model-control-mode=poll", "--repository-poll-secs=0.5"
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.get_model_metadata("polled")["versions"] == ["1"]
        (model_dir / "2").mkdir()
        (model_dir / "2" / "model.onnx").write_bytes(onnx_models.add_sub("INT32"))
        assert _wait_for(lambda: client.is_model_ready("polled", "2"))
        assert client.infer("polled", _simple_inputs()).get_response()["model_version"] == "2"
        # A broken edit: the serving version stays, and the index says why.
        (model_dir / "config.pbtxt").write_text('name: "polled"\nmax_batch_size: "eight"\n')

        def reason() -> str:
            index = client.get_model_repository_index()
            return " ".join(entry.get("reason", "") for entry in index if entry["name"] == "polled")

        assert _wait_for(lambda: "max_batch_size" in reason())
        assert client.is_model_ready("polled", "2")
        result = client.infer("polled", _simple_inputs(4))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 16), 8, np.int32))
        # Removing the model directory unloads it.
        (model_dir / "config.pbtxt").write_text(simple_config("polled", "INT32"))
        import shutil

        shutil.rmtree(model_dir)
        assert _wait_for(lambda: not client.is_model_ready("polled"))


def test_instance_count_change_scales_in_place(tmp_path: Path) -> None:
    model_dir = write_model(
        tmp_path, "scaled", simple_config("scaled", "INT32"), onnx_models.add_sub("INT32")
    )
    with ServerProcess(
        [tmp_path], "--model-control-mode=poll", "--repository-poll-secs=0.5"
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        client.infer("scaled", _simple_inputs())
        config = simple_config("scaled", "INT32") + "instance_group [ { count: 3 } ]\n"
        (model_dir / "config.pbtxt").write_text(config)

        def count() -> int:
            return client.get_model_config("scaled")["instance_group"][0]["count"]

        assert _wait_for(lambda: count() == 3)
        # Scaled in place: the same version kept serving and kept its statistics.
        stats = client.get_inference_statistics("scaled")["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == 1
        assert "scaled 'scaled' in place" in server.log
        client.infer("scaled", _simple_inputs())


# -- warmup and parallel loading -------------------------------------------------------


def _spin_config(name: str, warmup: str) -> str:
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: 1
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] }} ]
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "1" }} }}
{warmup}
"""


def _warmup(data: str) -> str:
    return (
        'model_warmup [ { name: "sample" batch_size: 1 inputs { key: "INPUT0" value: '
        f"{{ data_type: TYPE_FP32 dims: [ 1 ] {data} }} }} }} ]"
    )


def test_warmup(tmp_path: Path) -> None:
    spin = onnx_models.spin()
    good = write_model(tmp_path, "warm", _spin_config("warm", _warmup("zero_data: true")), spin)
    assert good.exists()
    write_model(
        tmp_path, "cold", _spin_config("cold", _warmup('input_data_file: "missing.bin"')), spin
    )
    bad_dims = _warmup("zero_data: true").replace("dims: [ 1 ]", "dims: [ 3 ]")
    write_model(tmp_path, "wrong", _spin_config("wrong", bad_dims), spin)
    with ServerProcess([tmp_path], "--exit-on-error=false") as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("warm")
        index = {entry["name"]: entry for entry in client.get_model_repository_index()}
        for name in ("cold", "wrong"):
            assert index[name]["state"] == "UNAVAILABLE", index[name]
            assert "warmup" in index[name]["reason"], index[name]


_STAMP = re.compile(
    r"^[IWE](\d{4} \d\d:\d\d:\d\d\.\d{6}) \d+ \S+\] (loading|successfully loaded) '(\w+)'"
)


def _load_windows(log: str) -> dict[str, tuple[datetime.datetime, datetime.datetime]]:
    starts: dict[str, datetime.datetime] = {}
    windows: dict[str, tuple[datetime.datetime, datetime.datetime]] = {}
    for line in log.splitlines():
        match = _STAMP.match(line)
        if not match:
            continue
        stamp = datetime.datetime.strptime(match.group(1), "%m%d %H:%M:%S.%f")
        if match.group(2) == "loading":
            starts[match.group(3)] = stamp
        else:
            windows[match.group(3)] = (starts[match.group(3)], stamp)
    return windows


@pytest.mark.parametrize("threads", [1, 2])
def test_parallel_loading_follows_the_thread_count(tmp_path: Path, threads: int) -> None:
    # Each model's warmup runs a second or so of work, from a data file of the rounds.
    for name in ("slow_a", "slow_b"):
        model_dir = write_model(
            tmp_path,
            name,
            _spin_config(name, _warmup('input_data_file: "rounds"')),
            onnx_models.spin(),
        )
        (model_dir / "warmup").mkdir()
        (model_dir / "warmup" / "rounds").write_bytes(np.array([2000], np.float32).tobytes())
    with ServerProcess([tmp_path], f"--model-load-thread-count={threads}") as server:
        windows = _load_windows(server.log)
    (a_start, a_end), (b_start, b_end) = windows["slow_a"], windows["slow_b"]
    overlap = min(a_end, b_end) > max(a_start, b_start)
    assert overlap == (threads == 2), windows
