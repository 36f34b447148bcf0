"""The bundled example repository: its files, its models' arithmetic, and the on-disk cache."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from tritonclient.grpc import model_config_pb2 as mc

from naiad import __version__
from naiad.config.model_config import parse_config_text
from naiad.examples.repository import example_repository, write_example_repository


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_repository(tmp_path_factory.mktemp("example") / "models")


def test_layout(written: Path) -> None:
    assert sorted(p.name for p in written.iterdir()) == [
        "identity_fp32",
        "mlp",
        "simple",
        "simple_string",
    ]
    for name in ("simple", "simple_string", "mlp", "identity_fp32"):
        assert (written / name / "1" / "model.onnx").is_file()
    # identity_fp32 is the auto-complete example: it must have no config at all.
    assert not (written / "identity_fp32" / "config.pbtxt").exists()


@pytest.mark.parametrize(
    ("name", "data_type"), [("simple", mc.TYPE_INT32), ("simple_string", mc.TYPE_STRING)]
)
def test_simple_configs(written: Path, name: str, data_type: int) -> None:
    path = written / name / "config.pbtxt"
    config = parse_config_text(path.read_text(), str(path))
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert [t.name for t in config.input] == ["INPUT0", "INPUT1"]
    assert [t.name for t in config.output] == ["OUTPUT0", "OUTPUT1"]
    for tensor in [*config.input, *config.output]:
        assert tensor.data_type == data_type
        assert list(tensor.dims) == [16]


def test_mlp_config_and_labels(written: Path) -> None:
    path = written / "mlp" / "config.pbtxt"
    config = parse_config_text(path.read_text(), str(path))
    assert config.max_batch_size == 8
    assert not config.HasField("dynamic_batching")
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("INPUT0", mc.TYPE_FP32, [256])
    ]
    (output,) = config.output
    assert (output.name, output.data_type, list(output.dims)) == ("OUTPUT0", mc.TYPE_FP32, [10])
    assert output.label_filename == "labels.txt"
    labels = (written / "mlp" / "labels.txt").read_text().splitlines()
    assert len(labels) == 10 and all(labels) and len(set(labels)) == 10


def test_simple_adds_and_subtracts(written: Path) -> None:
    session = _session(written / "simple" / "1" / "model.onnx")
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    total, difference = session.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(total, a + b)
    np.testing.assert_array_equal(difference, a - b)


def test_simple_string_adds_and_subtracts_decimal_strings(written: Path) -> None:
    session = _session(written / "simple_string" / "1" / "model.onnx")
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), -7, dtype=np.int32)
    as_text = np.vectorize(str, otypes=[np.object_])
    total, difference = session.run(
        ["OUTPUT0", "OUTPUT1"], {"INPUT0": as_text(a), "INPUT1": as_text(b)}
    )
    np.testing.assert_array_equal(total.astype(np.int32), a + b)
    np.testing.assert_array_equal(difference.astype(np.int32), a - b)


def test_mlp_and_identity_run(written: Path) -> None:
    mlp = _session(written / "mlp" / "1" / "model.onnx")
    x = np.random.default_rng(1).standard_normal((3, 256)).astype(np.float32)
    (logits,) = mlp.run(["OUTPUT0"], {"INPUT0": x})
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    identity = _session(written / "identity_fp32" / "1" / "model.onnx")
    (same,) = identity.run(["OUTPUT0"], {"INPUT0": x})
    np.testing.assert_array_equal(same, x)


def test_cache_is_generated_once_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = example_repository()
    assert first == tmp_path / "cache" / "naiad" / "example-repository" / __version__
    assert (first / "simple" / "config.pbtxt").is_file()
    stamp = (first / "mlp" / "1" / "model.onnx").stat().st_mtime_ns
    second = example_repository()
    assert second == first
    # Reused, not rewritten: the model file is the very same one.
    assert (second / "mlp" / "1" / "model.onnx").stat().st_mtime_ns == stamp
    # No staging directories left behind beside the cached copy.
    assert [p.name for p in first.parent.iterdir()] == [first.name]


def test_cache_repairs_an_incomplete_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    target = example_repository()
    (target / "simple" / "config.pbtxt").unlink()
    assert example_repository() == target
    assert (target / "simple" / "config.pbtxt").is_file()
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def _generate(cache: str) -> str:
    import os

    os.environ["XDG_CACHE_HOME"] = cache
    return str(example_repository())


def test_concurrent_first_use_agrees_on_one_copy(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    # Separate processes, as when two servers start together on a fresh machine.
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.map(_generate, [cache] * 3)
    assert len(set(paths)) == 1
    target = Path(paths[0])
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    session = _session(target / "simple" / "1" / "model.onnx")
    one = np.ones((1, 16), dtype=np.int32)
    total, _ = session.run(["OUTPUT0", "OUTPUT1"], {"INPUT0": one, "INPUT1": one})
    np.testing.assert_array_equal(total, one * 2)
