"""PyTorch backend against a real server: TorchScript and torch.export models built here.

Covers Triton's naming conventions (``INPUT__0``, forward-argument names, config order),
batching, two instances, and a corrupt file failing to load while the rest serve.
Expected values come from running the saved files in this process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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

pytestmark = [
    pytest.mark.e2e,
    # TorchScript is deprecated in torch 2.13, but it is the format Triton serves.
    pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning"),
]

torch = pytest.importorskip("torch")


class Mlp(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TwoInOut(torch.nn.Module):  # type: ignore[misc]
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + 2 * b, a * b


def mlp_config(name: str, count: int = 1) -> str:
    return f"""
name: "{name}"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 8 ] }} ]
output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU count: {count} }} ]
parameters [
  {{ key: "INFERENCE_MODE" value: {{ string_value: "true" }} }},
  {{ key: "DISABLE_OPTIMIZED_EXECUTION" value: {{ string_value: "true" }} }}
]
"""


# Inputs named after forward's arguments, listed in the opposite order; outputs named
# freely, so they map by config order.
NAMED_CONFIG = """
name: "torch_named"
backend: "pytorch"
max_batch_size: 0
input [
  { name: "b" data_type: TYPE_INT64 dims: [ 3 ] },
  { name: "a" data_type: TYPE_INT64 dims: [ 3 ] }
]
output [
  { name: "WEIGHTED_SUM" data_type: TYPE_INT64 dims: [ 3 ] },
  { name: "PRODUCT" data_type: TYPE_INT64 dims: [ 3 ] }
]
"""


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("pytorch")
    mlp = Mlp().eval()
    torch.jit.script(mlp).save(
        str(write_config(root, "torch_mlp", mlp_config("torch_mlp", 2)) / "model.pt")
    )
    torch.jit.script(TwoInOut()).save(
        str(write_config(root, "torch_named", NAMED_CONFIG) / "model.pt")
    )
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(mlp, (torch.randn(2, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(
        program, str(write_config(root, "torch_export", mlp_config("torch_export")) / "model.pt2")
    )
    corrupt = write_config(root, "torch_corrupt", mlp_config("torch_corrupt"))
    (corrupt / "model.pt").write_bytes(b"PK\x03\x04 this is not a TorchScript archive")
    return root


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess([repository], "--exit-on-error=false") as process:
        yield process


def _reference(path: Path, *inputs: np.ndarray) -> list[np.ndarray]:
    """The saved file's own output, run in this process."""
    module = (
        torch.export.load(str(path)).module()
        if path.suffix == ".pt2"
        else torch.jit.load(str(path))
    )
    with torch.inference_mode():
        result = module(*[torch.from_numpy(x) for x in inputs])
    outputs = result if isinstance(result, tuple) else (result,)
    return [output.numpy() for output in outputs]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "model,filename", [("torch_mlp", "model.pt"), ("torch_export", "model.pt2")]
)
@pytest.mark.parametrize("rows", [1, 4])
def test_mlp_equals_torch(
    server: ServerProcess, repository: Path, protocol: str, model: str, filename: str, rows: int
) -> None:
    x = np.random.default_rng(rows).normal(size=(rows, 8)).astype(np.float32)
    result = infer(server, protocol, model, {"INPUT__0": x}, ["OUTPUT__0"])
    (expected,) = _reference(repository / model / "1" / filename, x)
    assert result["OUTPUT__0"].shape == (rows, 4)
    np.testing.assert_allclose(result["OUTPUT__0"], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_forward_argument_names_and_config_order(
    server: ServerProcess, repository: Path, protocol: str
) -> None:
    a = np.array([1, 2, 3], dtype=np.int64)
    b = np.array([10, 20, 30], dtype=np.int64)
    result = infer(server, protocol, "torch_named", {"a": a, "b": b}, ["WEIGHTED_SUM", "PRODUCT"])
    np.testing.assert_array_equal(result["WEIGHTED_SUM"], a + 2 * b)
    np.testing.assert_array_equal(result["PRODUCT"], a * b)
    expected = _reference(repository / "torch_named" / "1" / "model.pt", a, b)
    np.testing.assert_array_equal(result["PRODUCT"], expected[1])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_two_instances_serve_concurrent_batches(
    server: ServerProcess, repository: Path, protocol: str
) -> None:
    assert model_config(server, "torch_mlp")["instance_group"][0]["count"] == 2  # type: ignore[index]
    rng = np.random.default_rng(3)
    batches = [{"INPUT__0": rng.normal(size=(4, 8)).astype(np.float32)} for _ in range(8)]
    results = infer_concurrently(server, protocol, "torch_mlp", batches, ["OUTPUT__0"])
    for batch, result in zip(batches, results, strict=True):
        (expected,) = _reference(repository / "torch_mlp" / "1" / "model.pt", batch["INPUT__0"])
        np.testing.assert_allclose(result["OUTPUT__0"], expected, rtol=1e-5, atol=1e-6)


def test_metadata(server: ServerProcess) -> None:
    metadata = model_metadata(server, "torch_named")
    assert metadata["platform"] == "pytorch_libtorch"
    assert [i["name"] for i in metadata["inputs"]] == ["b", "a"]  # type: ignore[index]
    assert metadata["outputs"] == [
        {"name": "WEIGHTED_SUM", "datatype": "INT64", "shape": [3]},
        {"name": "PRODUCT", "datatype": "INT64", "shape": [3]},
    ]
    assert model_metadata(server, "torch_mlp")["inputs"] == [
        {"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 8]}
    ]


def test_corrupt_model_reports_reason_while_others_serve(server: ServerProcess) -> None:
    states = model_states(server)
    assert {states[m]["state"] for m in ("torch_mlp", "torch_named", "torch_export")} == {"READY"}
    corrupt = states["torch_corrupt"]
    assert corrupt["state"] == "UNAVAILABLE"
    assert "failed to load model 'torch_corrupt'" in corrupt["reason"]
    assert "model.pt" in corrupt["reason"]
