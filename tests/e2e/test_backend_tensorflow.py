"""TensorFlow backend against a real server: a SavedModel and a frozen GraphDef built here.

The SavedModel has no config.pbtxt, so its config comes from the signature as Triton's
auto-complete makes it; a second model picks another signature with TF_SIGNATURE_DEF.
TensorFlow imports slowly, so one server serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.framework_helpers import (
    PROTOCOLS,
    infer,
    infer_concurrently,
    model_config,
    model_metadata,
    model_states,
    write_config,
)
from tests.server_process import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

tf = pytest.importorskip("tensorflow")


class Dense(tf.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        self.w = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def serve(self, x: Any) -> dict[str, Any]:
        return {"y": tf.nn.relu(tf.matmul(x, self.w)), "z": tf.reduce_sum(x, axis=1, keepdims=True)}

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def scaled(self, x: Any) -> dict[str, Any]:
        return {"scaled": x * 3.0}


@dataclass
class Built:
    module: Dense
    root: Path


GRAPHDEF_CONFIG = """
name: "tf_graphdef"
platform: "tensorflow_graphdef"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "Identity" data_type: TYPE_FP32 dims: [ 3 ] },
  { name: "Identity_1" data_type: TYPE_FP32 dims: [ 1 ] }
]
"""

SIGNATURE_CONFIG = """
name: "tf_signature"
platform: "tensorflow_savedmodel"
instance_group [ { kind: KIND_CPU count: 2 } ]
parameters [ { key: "TF_SIGNATURE_DEF" value: { string_value: "scaled" } } ]
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    root = tmp_path_factory.mktemp("tensorflow")
    module = Dense()
    signatures = {"serving_default": module.serve, "scaled": module.scaled}
    saved = root / "tf_savedmodel" / "1" / "model.savedmodel"
    tf.saved_model.save(module, str(saved), signatures=signatures)
    tf.saved_model.save(
        module,
        str(write_config(root, "tf_signature", SIGNATURE_CONFIG) / "model.savedmodel"),
        signatures=signatures,
    )
    frozen = convert_variables_to_constants_v2(module.serve.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    (write_config(root, "tf_graphdef", GRAPHDEF_CONFIG) / "model.graphdef").write_bytes(
        graph_def.SerializeToString()
    )
    corrupt = write_config(root, "tf_corrupt", GRAPHDEF_CONFIG.replace("tf_graphdef", "tf_corrupt"))
    (corrupt / "model.graphdef").write_bytes(b"\x08\x96\x01 not a GraphDef")
    return Built(module, root)


@pytest.fixture(scope="module")
def server(built: Built) -> Iterator[ServerProcess]:
    with ServerProcess([built.root], "--exit-on-error=false") as process:
        yield process


def _rows(count: int) -> np.ndarray:
    return np.random.default_rng(count).normal(size=(count, 4)).astype(np.float32)


def test_savedmodel_config_is_auto_completed_from_signature(server: ServerProcess) -> None:
    config = model_config(server, "tf_savedmodel")
    assert config["platform"] == "tensorflow_savedmodel"
    assert config["backend"] == "tensorflow"
    assert config["max_batch_size"] == 4
    assert "dynamic_batching" in config
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [  # type: ignore[union-attr]
        ("x", "TYPE_FP32", [4])
    ]
    assert [(o["name"], o["dims"]) for o in config["output"]] == [("y", [3]), ("z", [1])]  # type: ignore[union-attr]
    metadata = model_metadata(server, "tf_savedmodel")
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rows", [1, 4])
def test_savedmodel_equals_tensorflow(
    server: ServerProcess, built: Built, protocol: str, rows: int
) -> None:
    x = _rows(rows)
    result = infer(server, protocol, "tf_savedmodel", {"x": x}, ["y", "z"])
    expected = built.module.serve(x)
    np.testing.assert_allclose(result["y"], expected["y"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(result["z"], expected["z"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_signature_selection_and_two_instances(
    server: ServerProcess, built: Built, protocol: str
) -> None:
    config = model_config(server, "tf_signature")
    assert [o["name"] for o in config["output"]] == ["scaled"]  # type: ignore[union-attr]
    assert config["instance_group"][0]["count"] == 2  # type: ignore[index]
    batches = [{"x": _rows(4) + i} for i in range(8)]
    results = infer_concurrently(server, protocol, "tf_signature", batches, ["scaled"])
    for batch, result in zip(batches, results, strict=True):
        expected = built.module.scaled(batch["x"])["scaled"].numpy()
        np.testing.assert_allclose(result["scaled"], expected, rtol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_frozen_graphdef_equals_tensorflow(
    server: ServerProcess, built: Built, protocol: str
) -> None:
    x = _rows(4)
    result = infer(server, protocol, "tf_graphdef", {"x": x}, ["Identity", "Identity_1"])
    expected = built.module.serve(x)
    np.testing.assert_allclose(result["Identity"], expected["y"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(result["Identity_1"], expected["z"].numpy(), rtol=1e-6)


def test_corrupt_graphdef_reports_reason_while_others_serve(server: ServerProcess) -> None:
    states = model_states(server)
    assert states["tf_graphdef"]["state"] == "READY"
    corrupt = states["tf_corrupt"]
    assert corrupt["state"] == "UNAVAILABLE"
    assert "unable to load model 'tf_corrupt'" in corrupt["reason"]
    assert "model.graphdef" in corrupt["reason"]
