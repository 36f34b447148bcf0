"""Framework backends in process: missing extras, instances and threads, load-time errors.

Models are built here with the frameworks themselves; nothing is faked.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import ExecutionTimes, InstanceSpec, ModelContext, ModelInstance
from naiad.backends.registry import BackendRegistry
from naiad.config.model_config import normalize, resolve_backend
from naiad.errors import ModelConfigError, ModelLoadError, UnsupportedError
from naiad.examples import onnx_models
from naiad.inference import InferenceRequest, InferInput
from naiad.tensors import DataType

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:DeprecationWarning")


@pytest.mark.parametrize(
    "backend,module,extra",
    [
        ("pytorch", "torch", "torch"),
        ("tensorflow", "tensorflow", "tensorflow"),
        ("openvino", "openvino", "openvino"),
        ("fil", "treelite", "fil"),
    ],
)
def test_missing_framework_names_the_extra(backend: str, module: str, extra: str) -> None:
    # A None entry in sys.modules makes that import fail, as if the package were absent.
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        "from naiad.backends.registry import BackendRegistry\n"
        "try:\n"
        f"    BackendRegistry().get({backend!r})\n"
        "except Exception as exc:\n"
        "    print(exc)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert f"backend '{backend}' cannot be imported" in output
    assert f"pip install 'naiad[{extra}]'" in output


def test_tensorrt_plan_platform_is_refused_clearly(tmp_path: Path) -> None:
    config = mc.ModelConfig(name="plan", platform="tensorrt_plan")
    resolve_backend(config, [tmp_path], "config.pbtxt")
    with pytest.raises(UnsupportedError, match="not available on this build/machine"):
        BackendRegistry().get(config.backend)


def _context(tmp_path: Path, config_text: str) -> ModelContext:
    config = text_format.Parse(config_text, mc.ModelConfig())
    normalize(config, "config.pbtxt")
    return ModelContext(config.name, 1, config, tmp_path / config.name)


def _run_both(instances: list[ModelInstance], name: str, rows: np.ndarray, output: str) -> list:
    async def run_all() -> list:
        request = InferenceRequest("m", inputs=[InferInput(name, DataType.FP32, rows.shape, rows)])
        return await asyncio.gather(
            *[i.execute([request], [output], ExecutionTimes()) for i in instances]
        )

    return asyncio.run(run_all())


def _two_instances(backend: str, context: ModelContext) -> list[ModelInstance]:
    implementation = BackendRegistry().get(backend)
    return [implementation.create_instance(context, InstanceSpec("g", i, 2)) for i in range(2)]


def _threads(prefix: str) -> int:
    return sum(thread.name.startswith(prefix) for thread in threading.enumerate())


def test_fil_instances_run_on_their_own_threads(tmp_path: Path) -> None:
    import lightgbm as lgb

    rows = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    booster = lgb.train(
        {"objective": "regression", "verbose": -1}, lgb.Dataset(rows, rows[:, 0].copy()), 3
    )
    (tmp_path / "fil2" / "1").mkdir(parents=True)
    booster.save_model(str(tmp_path / "fil2" / "1" / "model.txt"))
    context = _context(
        tmp_path,
        'name: "fil2" backend: "fil" max_batch_size: 8 '
        'input { name: "input__0" data_type: TYPE_FP32 dims: [ 3 ] } '
        'output { name: "output__0" data_type: TYPE_FP32 dims: [ 1 ] } '
        'parameters { key: "model_type" value: { string_value: "lightgbm" } }',
    )
    instances = _two_instances("fil", context)
    try:
        results = _run_both(instances, "input__0", rows[:2], "output__0")
        assert _threads("fil-fil2") == 2
        expected = booster.predict(rows[:2]).astype(np.float32).reshape(-1, 1)
        for (result,) in results:
            np.testing.assert_allclose(result["output__0"], expected, rtol=1e-5)
    finally:
        for instance in instances:
            instance.close()


def test_openvino_instances_share_a_compiled_model(tmp_path: Path) -> None:
    (tmp_path / "ov2" / "1").mkdir(parents=True)
    (tmp_path / "ov2" / "1" / "model.onnx").write_bytes(onnx_models.mlp((4, 8, 2)))
    context = _context(
        tmp_path,
        'name: "ov2" backend: "openvino" default_model_filename: "model.onnx" '
        'max_batch_size: 4 input { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } '
        'output { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 2 ] }',
    )
    instances = _two_instances("openvino", context)
    try:
        rows = np.ones((3, 4), dtype=np.float32)
        (first,), (second,) = _run_both(instances, "INPUT0", rows, "OUTPUT0")
        assert _threads("ov-ov2") == 2
        np.testing.assert_array_equal(first["OUTPUT0"], second["OUTPUT0"])
        assert instances[0]._compiled is instances[1]._compiled  # type: ignore[attr-defined]
    finally:
        for instance in instances:
            instance.close()


def test_openvino_refuses_unsupported_parameters(tmp_path: Path) -> None:
    from naiad.backends.openvino.properties import compile_properties

    config = mc.ModelConfig(name="m")
    config.parameters["ENABLE_BATCH_PADDING"].string_value = "YES"
    with pytest.raises(ModelConfigError, match="'ENABLE_BATCH_PADDING' is not supported"):
        compile_properties(config)


TORCH_CONFIG = """
name: "{name}" backend: "pytorch" max_batch_size: 4
input {{ name: "{first}" data_type: TYPE_FP32 dims: [ 2 ] }}
input {{ name: "{second}" data_type: TYPE_FP32 dims: [ 2 ] }}
output {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 2 ] }}
parameters {{ key: "ENABLE_WEIGHT_SHARING" value: {{ string_value: "true" }} }}
parameters {{ key: "INTRA_OP_THREAD_COUNT" value: {{ string_value: "1" }} }}
"""


def _save_torchscript(tmp_path: Path, name: str, module: object) -> None:
    import torch

    (tmp_path / name / "1").mkdir(parents=True)
    torch.jit.script(module).save(str(tmp_path / name / "1" / "model.pt"))


def test_torch_named_index_dict_input_and_weight_sharing(tmp_path: Path) -> None:
    import torch

    class Difference(torch.nn.Module):  # type: ignore[misc]
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x - y

    class DictDifference(torch.nn.Module):  # type: ignore[misc]
        def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return inputs["LEFT"] - inputs["RIGHT"]

    _save_torchscript(tmp_path, "diff", Difference())
    _save_torchscript(tmp_path, "dict", DictDifference())
    left = np.array([[5.0, 7.0]], dtype=np.float32)
    right = np.array([[1.0, 2.0]], dtype=np.float32)
    # INPUT__1 listed first: positions come from the suffix, not from the order.
    diff = _context(tmp_path, TORCH_CONFIG.format(name="diff", first="INPUT__1", second="INPUT__0"))
    by_dict = _context(tmp_path, TORCH_CONFIG.format(name="dict", first="RIGHT", second="LEFT"))
    for context, names in ((diff, ("INPUT__0", "INPUT__1")), (by_dict, ("LEFT", "RIGHT"))):
        instances = _two_instances("pytorch", context)
        try:
            # Weight sharing: both instances call one loaded module, each on its own thread.
            assert instances[0]._loaded is instances[1]._loaded  # type: ignore[attr-defined]
            assert _threads(f"torch-{context.name}") == 2

            request = InferenceRequest(
                context.name,
                inputs=[
                    InferInput(names[0], DataType.FP32, (1, 2), left),
                    InferInput(names[1], DataType.FP32, (1, 2), right),
                ],
            )
            (result,) = asyncio.run(
                instances[0].execute([request], ["OUTPUT__0"], ExecutionTimes())  # type: ignore[arg-type]
            )
            np.testing.assert_array_equal(result["OUTPUT__0"], left - right)
        finally:
            for instance in instances:
                instance.close()


def test_torch_load_errors(tmp_path: Path) -> None:
    import torch

    from naiad.backends.pytorch.loading import load_model

    class Pair(torch.nn.Module):  # type: ignore[misc]
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x + y

    _save_torchscript(tmp_path, "pair", Pair())
    context = _context(
        tmp_path,
        'name: "pair" backend: "pytorch" max_batch_size: 4 '
        'input { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 2 ] } '
        'output { name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 2 ] }',
    )
    with pytest.raises(ModelConfigError, match="configuration expects 1 inputs, model provides 2"):
        BackendRegistry().get("pytorch").create_instance(context, InstanceSpec("g", 0, 2))
    aoti = tmp_path / "model.pt2"
    with zipfile.ZipFile(aoti, "w") as archive:
        archive.writestr("model/data/aotinductor/model/abc.wrapper.so", b"")
    with pytest.raises(ModelLoadError, match="is an AOTInductor package"):
        load_model(aoti, "aoti")
    with pytest.raises(ModelLoadError, match="unable to find"):
        load_model(tmp_path / "missing.pt", "missing")


def test_fil_options() -> None:
    from naiad.backends.fil.options import FilOptions

    config = mc.ModelConfig(name="m")
    config.parameters["model_type"].string_value = "lightgbm"
    config.parameters["is_classifier"].string_value = "true"
    config.parameters["algo"].string_value = "NAIVE"  # GPU tuning: accepted, no effect
    options = FilOptions.from_config(config)
    assert options.output_class and not options.predict_proba and options.threshold == 0.5
    assert options.default_filename == "model.txt"
    config.parameters["model_type"].string_value = "sklearn_pkl"
    with pytest.raises(ModelConfigError, match="unknown FIL model_type 'sklearn_pkl'"):
        FilOptions.from_config(config)


@pytest.mark.parametrize(
    ("cores", "instances", "threads"),
    [(1, 1, 1), (2, 1, 1), (2, 2, 1), (8, 1, 7), (8, 2, 3), (16, 4, 3), (4, 8, 1)],
)
def test_ort_threads_leave_a_core_to_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, cores: int, instances: int, threads: int
) -> None:
    from naiad.backends.onnxruntime import backend as ort_backend

    monkeypatch.setattr(ort_backend.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert ort_backend.default_intra_op_threads(instances) == threads
