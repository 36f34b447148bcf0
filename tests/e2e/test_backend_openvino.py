"""OpenVINO backend against a real server: IR converted here from an ONNX model, and ONNX.

Two IR models have no config.pbtxt: the one whose input layout names the batch
dimension is auto-completed as batching (``max_batch_size: 4``), the other is not,
as Triton's OpenVINO backend does. Expected values come from OpenVINO in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import naiad.backends.openvino  # noqa: F401 - first: keeps OpenVINO's telemetry off
from naiad.examples import onnx_models
from tests.e2e.framework_helpers import (
    PROTOCOLS,
    infer,
    infer_concurrently,
    model_config,
    model_metadata,
    model_states,
)
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

ov = pytest.importorskip("openvino")

ONNX_CONFIG = """
name: "ov_onnx"
backend: "openvino"
default_model_filename: "model.onnx"
max_batch_size: 8
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 8 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { kind: KIND_CPU count: 2 } ]
parameters [
  { key: "INFERENCE_NUM_THREADS" value: { string_value: "1" } },
  { key: "NUM_STREAMS" value: { string_value: "1" } },
  { key: "PERFORMANCE_HINT" value: { string_value: "LATENCY" } }
]
"""


def _version_dir(root: Path, name: str, config: str | None = None) -> Path:
    version = root / name / "1"
    version.mkdir(parents=True)
    if config is not None:
        (root / name / "config.pbtxt").write_text(config)
    return version


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("openvino")
    onnx_path = root / "mlp.onnx"
    onnx_path.write_bytes(onnx_models.mlp((8, 16, 4)))
    core = ov.Core()
    with_layout = core.read_model(str(onnx_path))
    with_layout.inputs[0].get_node().set_layout(ov.Layout("N?"))
    ov.save_model(with_layout, str(_version_dir(root, "ov_ir") / "model.xml"))
    ov.save_model(
        core.read_model(str(onnx_path)), str(_version_dir(root, "ov_nolayout") / "model.xml")
    )
    (_version_dir(root, "ov_onnx", ONNX_CONFIG) / "model.onnx").write_bytes(onnx_path.read_bytes())
    corrupt = _version_dir(
        root,
        "ov_corrupt",
        ONNX_CONFIG.replace("ov_onnx", "ov_corrupt").replace("model.onnx", "model.xml"),
    )
    (corrupt / "model.xml").write_text("<net><layers><layer id='0'")
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess([repository], "--exit-on-error=false") as process:
        yield process


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    compiled = ov.Core().compile_model(str(path), "CPU")
    return np.asarray(compiled({0: x})[compiled.output(0)])


def _rows(count: int) -> np.ndarray:
    return np.random.default_rng(count).normal(size=(count, 8)).astype(np.float32)


def test_auto_complete_uses_layout_for_batching(server: ServerProcess) -> None:
    batching = model_config(server, "ov_ir")
    assert batching["max_batch_size"] == 4
    assert "dynamic_batching" in batching
    assert [(i["name"], i["data_type"], i["dims"]) for i in batching["input"]] == [  # type: ignore[union-attr]
        ("INPUT0", "TYPE_FP32", [8])
    ]
    assert [(o["name"], o["dims"]) for o in batching["output"]] == [("OUTPUT0", [4])]  # type: ignore[union-attr]
    plain = model_config(server, "ov_nolayout")
    assert plain["max_batch_size"] == 0
    assert plain["input"][0]["dims"] == [-1, 8]  # type: ignore[index]
    assert model_metadata(server, "ov_ir")["inputs"] == [
        {"name": "INPUT0", "datatype": "FP32", "shape": [-1, 8]}
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", ["ov_ir", "ov_nolayout"])
@pytest.mark.parametrize("rows", [1, 4])
def test_ir_equals_openvino(
    server: ServerProcess, repository: Path, protocol: str, model: str, rows: int
) -> None:
    x = _rows(rows)
    result = infer(server, protocol, model, {"INPUT0": x}, ["OUTPUT0"])
    expected = _reference(repository / model / "1" / "model.xml", x)
    assert result["OUTPUT0"].shape == (rows, 4)
    np.testing.assert_allclose(result["OUTPUT0"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_onnx_through_openvino_on_two_instances(
    server: ServerProcess, repository: Path, protocol: str
) -> None:
    assert model_config(server, "ov_onnx")["instance_group"][0]["count"] == 2  # type: ignore[index]
    batches = [{"INPUT0": _rows(4) + i} for i in range(8)]
    results = infer_concurrently(server, protocol, "ov_onnx", batches, ["OUTPUT0"])
    for batch, result in zip(batches, results, strict=True):
        expected = _reference(repository / "ov_onnx" / "1" / "model.onnx", batch["INPUT0"])
        np.testing.assert_allclose(result["OUTPUT0"], expected, rtol=1e-5, atol=1e-6)


def test_corrupt_ir_reports_reason_while_others_serve(server: ServerProcess) -> None:
    states = model_states(server)
    assert {states[m]["state"] for m in ("ov_ir", "ov_nolayout", "ov_onnx")} == {"READY"}
    corrupt = states["ov_corrupt"]
    assert corrupt["state"] == "UNAVAILABLE"
    assert "OpenVINO cannot read" in corrupt["reason"]
    assert "Unable to read the model" in corrupt["reason"]
    assert "model.xml" in corrupt["reason"]
