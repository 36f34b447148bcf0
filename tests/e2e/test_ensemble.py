"""Ensembles against a real server (explicit mode) over HTTP and gRPC.

A pipeline (python pre-processor from raw bytes, ONNX classifier, labels on the
ensemble's output), a diamond whose two branches record their own start and end
times (so overlap is shown by the models, not by wall-clock thresholds), step errors
naming the step, bad configs refused naming the tensor or model, statistics of the
ensemble and its steps, and steps loaded with the ensemble.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from naiad.examples import onnx_models
from tests.python_models import write_python_model
from tests.repository import write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

# Parses "0.1,0.2,..." into five floats; anything else fails that request, by name.
PREPROCESS = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "RAW").as_numpy().reshape(-1)[0]
            try:
                values = np.array([float(v) for v in raw.decode().split(",")], dtype=np.float32)
                assert values.shape == (5,)
            except (ValueError, AssertionError):
                error = pb_utils.TritonError("cannot parse the raw input")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("FEATURES", values)]))
        return responses
"""

# A branch of the diamond: sleeps, returns twice its input and when it ran.
BRANCH = """
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            start = time.monotonic()
            time.sleep(0.2)
            value = pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()
            stamps = [np.array([start], np.float64), np.array([time.monotonic()], np.float64)]
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("OUT", value * 2),
                pb_utils.Tensor("START", stamps[0]),
                pb_utils.Tensor("END", stamps[1]),
            ]))
        return responses
"""

ADD_ONE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("OUT", pb_utils.get_input_tensor_by_name(r, "IN").as_numpy() + 1)]
            )
            for r in requests
        ]
"""

JOIN = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            a = pb_utils.get_input_tensor_by_name(r, "A").as_numpy()
            b = pb_utils.get_input_tensor_by_name(r, "B").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUT", a + b)]))
        return out
"""


def _python_config(name: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    def tensors(items: dict[str, str]) -> str:
        return ", ".join(
            f'{{ name: "{n}" data_type: {t} dims: [ {5 if n == "FEATURES" else 1} ] }}'
            for n, t in items.items()
        )

    return f"""
    name: "{name}"
    backend: "python"
    input [ {tensors(inputs)} ]
    output [ {tensors(outputs)} ]
    """


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    def maps(kind: str, items: dict[str, str]) -> str:
        return " ".join(f'{kind} {{ key: "{k}" value: "{v}" }}' for k, v in items.items())

    return (
        f'{{ model_name: "{model}" model_version: -1 '
        f"{maps('input_map', inputs)} {maps('output_map', outputs)} }}"
    )


def _ensemble(name: str, inputs: list[str], outputs: list[str], steps: list[str]) -> str:
    def tensors(bodies: list[str]) -> str:
        return ", ".join(f"{{ {body} }}" for body in bodies)

    return f"""
name: "{name}"
platform: "ensemble"
input [ {tensors(inputs)} ]
output [ {tensors(outputs)} ]
ensemble_scheduling {{ step [ {", ".join(steps)} ] }}
"""


def _write_ensemble(root: Path, name: str, config: str) -> None:
    write_model(root, name, config, None)  # an empty version directory, as Triton wants


FP32_1 = "data_type: TYPE_FP32 dims: [ 1 ]"
FP64_1 = "data_type: TYPE_FP64 dims: [ 1 ]"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ensembles")
    write_python_model(
        root,
        "preprocess",
        PREPROCESS,
        _python_config("preprocess", {"RAW": "TYPE_STRING"}, {"FEATURES": "TYPE_FP32"}),
    )
    write_model(
        root,
        "classifier",
        """
name: "classifier"
backend: "onnxruntime"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 5 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 5 ] } ]
""",
        onnx_models.identity("FP32", [5], batch=False),
    )
    pipeline = _ensemble(
        "pipeline",
        ['name: "RAW" data_type: TYPE_STRING dims: [ 1 ]'],
        ['name: "SCORES" data_type: TYPE_FP32 dims: [ 5 ] label_filename: "labels.txt"'],
        [
            _step("preprocess", {"RAW": "RAW"}, {"FEATURES": "features"}),
            _step("classifier", {"INPUT0": "features"}, {"OUTPUT0": "SCORES"}),
        ],
    )
    _write_ensemble(root, "pipeline", pipeline)
    (root / "pipeline" / "labels.txt").write_text("cat\ndog\nbird\nfish\nfrog\n")

    fp = {"IN": "TYPE_FP32"}
    write_python_model(
        root, "add_one", ADD_ONE, _python_config("add_one", fp, {"OUT": "TYPE_FP32"})
    )
    for name in ("branch_b", "branch_c"):
        outputs = {"OUT": "TYPE_FP32", "START": "TYPE_FP64", "END": "TYPE_FP64"}
        write_python_model(root, name, BRANCH, _python_config(name, fp, outputs))
    join_inputs = {"A": "TYPE_FP32", "B": "TYPE_FP32"}
    write_python_model(
        root, "join", JOIN, _python_config("join", join_inputs, {"OUT": "TYPE_FP32"})
    )
    stamps = {"START": "", "END": ""}
    diamond = _ensemble(
        "diamond",
        [f'name: "X" {FP32_1}'],
        [f'name: "Y" {FP32_1}'] + [f'name: "{b}_{s}" {FP64_1}' for b in "BC" for s in stamps],
        [
            _step("add_one", {"IN": "X"}, {"OUT": "a"}),
            _step("branch_b", {"IN": "a"}, {"OUT": "b", "START": "B_START", "END": "B_END"}),
            _step("branch_c", {"IN": "a"}, {"OUT": "c", "START": "C_START", "END": "C_END"}),
            _step("join", {"A": "b", "B": "c"}, {"OUT": "Y"}),
        ],
    )
    _write_ensemble(root, "diamond", diamond)

    one_in, one_out = [f'name: "X" {FP32_1}'], [f'name: "Y" {FP32_1}']
    _write_ensemble(
        root,
        "cycle",
        _ensemble(
            "cycle",
            one_in,
            one_out,
            [
                _step("join", {"A": "X", "B": "loop"}, {"OUT": "Y"}),
                _step("add_one", {"IN": "Y"}, {"OUT": "loop"}),
            ],
        ),
    )
    _write_ensemble(
        root,
        "missing_tensor",
        _ensemble(
            "missing_tensor",
            one_in,
            one_out,
            [_step("join", {"A": "X", "B": "nowhere"}, {"OUT": "Y"})],
        ),
    )
    _write_ensemble(
        root,
        "unknown_step",
        _ensemble(
            "unknown_step", one_in, one_out, [_step("no_such_model", {"IN": "X"}, {"OUT": "Y"})]
        ),
    )
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        [repository],
        "--model-control-mode=explicit",
        "--load-model=pipeline",
        "--load-model=diamond",
    ) as process:
        yield process


def test_loading_an_ensemble_loads_its_steps(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    states = {e["name"]: e.get("state") for e in client.get_model_repository_index()}
    for name in ("pipeline", "preprocess", "classifier", "diamond", "add_one", "join"):
        assert states[name] == "READY", (name, states)
    assert states["cycle"] in ("", None)  # not named, not loaded
    metadata = client.get_model_metadata("pipeline")
    assert metadata["platform"] == "ensemble"
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [("RAW", "BYTES")]
    config = grpcclient.InferenceServerClient(server.grpc_url).get_model_config("pipeline").config
    assert config.platform == "ensemble"
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["preprocess", "classifier"]


def test_pipeline_classifies_raw_bytes(server: ServerProcess) -> None:
    raw = np.array([b"0.1,0.7,0.9,0.0,0.3"], dtype=np.object_)
    http = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("RAW", [1], "BYTES")
    tensor.set_data_from_numpy(raw)
    result = http.infer(
        "pipeline", [tensor], outputs=[httpclient.InferRequestedOutput("SCORES", class_count=2)]
    )
    assert [v.decode() for v in result.as_numpy("SCORES")] == ["0.900000:2:bird", "0.700000:1:dog"]

    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    tensor_g = grpcclient.InferInput("RAW", [1], "BYTES")
    tensor_g.set_data_from_numpy(raw)
    plain = grpc.infer("pipeline", [tensor_g])
    np.testing.assert_allclose(plain.as_numpy("SCORES"), [0.1, 0.7, 0.9, 0.0, 0.3], rtol=1e-6)
    top = grpc.infer(
        "pipeline", [tensor_g], outputs=[grpcclient.InferRequestedOutput("SCORES", class_count=1)]
    )
    assert [v.decode() for v in top.as_numpy("SCORES")] == ["0.900000:2:bird"]


def test_a_failing_step_is_named(server: ServerProcess) -> None:
    raw = np.array([b"not numbers"], dtype=np.object_)
    for module, url in ((httpclient, server.http_url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        tensor = module.InferInput("RAW", [1], "BYTES")
        tensor.set_data_from_numpy(raw)
        with pytest.raises(InferenceServerException) as info:
            client.infer("pipeline", [tensor])
        message = info.value.message()
        assert "in ensemble 'pipeline', step 'preprocess'" in message
        assert "cannot parse the raw input" in message


def _diamond_inputs(module, value: float):  # type: ignore[no-untyped-def]
    tensor = module.InferInput("X", [1], "FP32")
    tensor.set_data_from_numpy(np.array([value], dtype=np.float32))
    return [tensor]


def test_diamond_branches_overlap_and_statistics(server: ServerProcess) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)

    def counts() -> dict[str, int]:
        stats = http.get_inference_statistics()["model_stats"]
        return {s["name"]: s["inference_stats"]["success"]["count"] for s in stats}

    before = counts()
    for result in (
        http.infer("diamond", _diamond_inputs(httpclient, 2.0)),
        grpc.infer("diamond", _diamond_inputs(grpcclient, 2.0)),
    ):
        # (2 + 1) * 2 on each branch, joined: 12.
        assert result.as_numpy("Y").tolist() == [12.0]
        starts = [result.as_numpy(f"{b}_START")[0] for b in "BC"]
        ends = [result.as_numpy(f"{b}_END")[0] for b in "BC"]
        # Each branch started before the other ended: they ran at the same time.
        assert max(starts) < min(ends), (starts, ends)
        # Both 200 ms branches fit in well under two sleeps, by the models' own clocks.
        assert max(ends) - min(starts) < 0.4, (starts, ends)
    after = counts()
    for name in ("diamond", "add_one", "branch_b", "branch_c", "join"):
        assert after[name] - before.get(name, 0) == 2, name
    ensemble = grpc.get_inference_statistics("diamond").model_stats[0]
    assert ensemble.inference_stats.fail.count == 0
    # The server's own record: the whole pipeline took about one sleep, not two.
    compute = ensemble.inference_stats.compute_infer
    assert compute.ns / compute.count < 0.4e9, compute
    assert ensemble.inference_count >= 2


def test_bad_ensemble_configs_fail_to_load_naming_the_problem(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    expected = {
        "cycle": "circular dependency through ensemble tensor",
        "missing_tensor": "ensemble tensor 'nowhere' is consumed by step 0",
        "unknown_step": "depends on 'no_such_model' which is not found",
    }
    for name, text in expected.items():
        with pytest.raises(InferenceServerException) as info:
            client.load_model(name)
        assert text in info.value.message(), info.value.message()
        assert not client.is_model_ready(name)
    assert client.is_model_ready("pipeline")  # the others keep serving


def test_unload_dependents_and_reload_through_the_ensemble(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.unload_model("classifier", unload_dependents=True)
    assert not client.is_model_ready("classifier")
    assert not client.is_model_ready("pipeline")
    client.load_model("pipeline")  # brings the classifier back with it
    assert client.is_model_ready("classifier")
    assert client.is_model_ready("pipeline")


def test_ensembles_load_after_their_steps_at_start_up(tmp_path: Path) -> None:
    # "a_wrap" sorts before its step and still loads (none mode loads everything).
    write_model(tmp_path, "identity", None, onnx_models.identity("FP32", [-1]))
    config = _ensemble(
        "a_wrap",
        ['name: "X" data_type: TYPE_FP32 dims: [ -1 ]'],
        ['name: "Y" data_type: TYPE_FP32 dims: [ -1 ]'],
        [_step("identity", {"INPUT0": "X"}, {"OUTPUT0": "Y"})],
    )
    _write_ensemble(
        tmp_path,
        "a_wrap",
        config.replace('platform: "ensemble"', 'max_batch_size: 8\nplatform: "ensemble"'),
    )
    with ServerProcess([tmp_path]) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        tensor = httpclient.InferInput("X", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
        assert client.infer("a_wrap", [tensor]).as_numpy("Y").tolist() == [[1, 2, 3]]
