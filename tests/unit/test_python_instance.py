"""A python-backend instance driven directly: batches in one message, per-request results,
model is_ready, execution environments, and where python-based backends are found."""

from __future__ import annotations

import asyncio
import site
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import ExecutionTimes, InstanceSpec, ModelContext
from naiad.backends.python.backend import PythonBackend
from naiad.backends.python.environments import execution_environment
from naiad.backends.python.instance import PythonInstance
from naiad.backends.python.sources import find_backend_source
from naiad.config.model_config import normalize
from naiad.errors import InvalidArgumentError, ModelConfigError
from naiad.inference import InferenceRequest, InferInput
from naiad.tensors import DataType
from tests import python_models as models
from tests.python_models import write_python_model

READY_MODEL = """
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def is_ready(self):
        return os.path.exists(os.path.join(pb_utils.get_model_dir(), "ready"))

    def execute(self, requests):
        prefix = np.array([sys.prefix.encode()], dtype=object)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", prefix)]) for _ in requests]
"""


def _context(model_dir: Path, config_text: str) -> ModelContext:
    config = mc.ModelConfig()
    text_format.Parse(config_text, config)
    normalize(config, "test")
    return ModelContext(config.name, 1, config, model_dir)


def _request(value: int) -> InferenceRequest:
    data = np.array([value], dtype=np.int32)
    return InferenceRequest("m", inputs=[InferInput("IN", DataType.INT32, (1,), data)])


def _start(context: ModelContext) -> PythonInstance:
    instance = PythonBackend().create_instance(context, InstanceSpec(context.name, 0, 1))
    assert isinstance(instance, PythonInstance)
    return instance


def test_a_batch_of_requests_goes_in_one_message_with_results_per_request(tmp_path: Path) -> None:
    model_dir = write_python_model(tmp_path, "value_errors", models.VALUE_ERRORS, None)
    instance = _start(_context(model_dir, models.VALUE_ERRORS_CONFIG))

    async def run() -> list[object]:
        batch = [_request(v) for v in (4, -1, 6)]
        return list(await instance.execute(batch, ["OUT"], ExecutionTimes()))

    try:
        first, second, third = asyncio.run(run())
    finally:
        instance.close()
    assert isinstance(first, dict) and int(first["OUT"][0]) == 8
    assert isinstance(second, InvalidArgumentError) and second.message == "negative input -1"
    assert isinstance(third, dict) and int(third["OUT"][0]) == 12


def test_model_is_ready_is_asked_and_an_execution_env_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A conda-pack style tarball: an environment whose bin/python runs on its own; it
    # sees this environment's packages (numpy) through a .pth file.
    env = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    purelib = subprocess.run(
        [
            str(env / "bin/python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    lines = [f"import site; site.addsitedir({p!r})" for p in site.getsitepackages()]
    (Path(purelib) / "parent.pth").write_text("\n".join(lines) + "\n")
    archive = tmp_path / "models" / "ready" / "env.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(env, arcname=".")
    model_dir = write_python_model(tmp_path / "models", "ready", READY_MODEL, None)
    config = models.python_based_config("ready", "python") + (
        'parameters { key: "EXECUTION_ENV_PATH" '
        'value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }'
    )
    monkeypatch.setenv("NAIAD_CACHE_DIR", str(tmp_path / "cache"))
    instance = _start(_context(model_dir, config))

    async def run() -> tuple[bool, bool, bytes]:
        first = instance.is_ready()
        (model_dir / "1" / "ready").touch()
        await asyncio.sleep(0.6)
        instance.is_ready()  # asks the model again (answers arrive asynchronously)
        await asyncio.sleep(0.3)
        (result,) = await instance.execute([_request(1)], ["OUT"], ExecutionTimes())
        assert isinstance(result, dict)
        return first, instance.is_ready(), bytes(result["OUT"][0])

    try:
        before, after, prefix = asyncio.run(run())
    finally:
        instance.close()
    assert (before, after) == (False, True)
    unpacked = next(p for p in (tmp_path / "cache" / "envs").iterdir() if p.is_dir())
    assert Path(prefix.decode()).resolve() == unpacked.resolve()


def test_execution_env_must_stay_in_the_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="leads out of the model directory"):
        execution_environment("$$TRITON_MODEL_DIRECTORY/../elsewhere", tmp_path / "m", "m")


def test_python_based_backend_search_order_and_runtime(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "m"
    backends = tmp_path / "backends"
    for directory in (model_dir / "1", model_dir, backends / "be"):
        directory.mkdir(parents=True, exist_ok=True)
    config = mc.ModelConfig(name="m", backend="be")
    (backends / "be" / "model.py").write_text("")
    found = find_backend_source("be", config, model_dir, 1, backends)
    assert found is not None and found.module_file == backends / "be" / "model.py"
    assert found.module_name == "model" and found.model_dir == model_dir / "1"
    (model_dir / "model.py").write_text("")
    found = find_backend_source("be", config, model_dir, 1, backends)
    assert found is not None and found.module_file == model_dir / "model.py"
    (model_dir / "1" / "model.py").write_text("")
    found = find_backend_source("be", config, model_dir, 1, backends)
    assert found is not None and found.module_name == "1.model"
    config.runtime = "other.py"
    assert find_backend_source("be", config, model_dir, 1, backends) is None
    (backends / "be" / "other.py").write_text("")
    found = find_backend_source("be", config, model_dir, 1, backends)
    assert found is not None and found.module_file == backends / "be" / "other.py"
    config.runtime = "../escape.py"
    with pytest.raises(ModelConfigError):
        find_backend_source("be", config, model_dir, 1, backends)
