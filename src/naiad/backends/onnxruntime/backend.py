"""ONNX Runtime backend: one ``InferenceSession`` per model instance, run on its own thread.

Session options come from the config's ``parameters`` with Triton's ORT backend keys
(``intra_op_thread_count``, ``inter_op_thread_count``, ``execution_mode``,
``enable_mem_arena``, ``enable_mem_pattern``) and ``optimization.graph.level``.
Defaults suit small machines: the cores are split between instances, and ORT's
threads do not spin, since they share the CPU with the server's own event loop.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnxruntime as ort
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance, ThreadedInstance
from naiad.backends.onnxruntime.types import ONNX_BFLOAT16, ORT_TO_CONFIG, ort_dims
from naiad.errors import InvalidArgumentError, ModelConfigError, ModelLoadError

DEFAULT_MODEL_FILENAME = "model.onnx"
# Triton's --backend-config default-max-batch-size, used by auto-complete.
DEFAULT_MAX_BATCH_SIZE = 4


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        filename = config.default_model_filename or DEFAULT_MODEL_FILENAME
        model_path = next((d / filename for d in version_dirs if (d / filename).exists()), None)
        if model_path is None:
            return  # loading reports the missing file with its path
        session = _open_session(model_path, _session_options(config, 1), str(model_path))
        inputs = session.get_inputs()
        outputs = session.get_outputs()
        if not config.default_model_filename:
            config.default_model_filename = DEFAULT_MODEL_FILENAME
        if not config.platform:
            config.platform = "onnxruntime_onnx"
        batchable = all(ort_dims(t.shape)[:1] == [-1] for t in [*inputs, *outputs])
        fill = not config.input and not config.output
        if fill and config.max_batch_size == 0 and batchable:
            config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
            if not config.HasField("dynamic_batching") and not config.HasField("sequence_batching"):
                config.dynamic_batching.SetInParent()
        skip = 1 if config.max_batch_size > 0 else 0
        if not config.input:
            for tensor in inputs:
                _add_tensor(config.input.add(), tensor, skip)
        if not config.output:
            for tensor in outputs:
                _add_tensor(config.output.add(), tensor, skip)

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        path = context.model_file(DEFAULT_MODEL_FILENAME)
        if not path.exists():
            raise ModelLoadError(
                f"unable to find '{path}' for model '{context.name}' version {context.version}"
            )
        options = _session_options(context.config, _instance_count(context.config))
        session = _open_session(path, options, str(path))
        return OnnxRuntimeInstance(context, spec, session)


class OnnxRuntimeInstance(ThreadedInstance):
    def __init__(self, context: ModelContext, spec: InstanceSpec, session: ort.InferenceSession):
        super().__init__(thread_name=f"ort-{context.name}")
        self._session = session
        self._input_types = {t.name: t.type for t in session.get_inputs()}
        self._output_types = {t.name: t.type for t in session.get_outputs()}
        self._bf16 = "tensor(bfloat16)" in {
            *self._input_types.values(),
            *self._output_types.values(),
        }
        missing = [t.name for t in context.config.input if t.name not in self._input_types]
        missing += [t.name for t in context.config.output if t.name not in self._output_types]
        if missing:
            raise ModelLoadError(
                f"model '{context.name}': configuration names tensors the ONNX model does not "
                f"have: {', '.join(missing)}"
            )

    def run(
        self, inputs: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        feeds = {name: self._to_ort(name, array) for name, array in inputs.items()}
        names = list(output_names)
        if self._bf16:
            values = self._session.run_with_ort_values(
                names, {k: _as_ort_value(v) for k, v in feeds.items()}
            )
            return {name: _from_ort_value(value) for name, value in zip(names, values, strict=True)}
        results = self._session.run(names, feeds)
        return {name: _from_ort(value) for name, value in zip(names, results, strict=True)}

    def _to_ort(self, name: str, array: np.ndarray) -> Any:
        if self._input_types.get(name) == "tensor(string)":
            try:
                return np.array(
                    [
                        x.decode("utf-8") if isinstance(x, bytes) else str(x)
                        for x in array.reshape(-1)
                    ],
                    dtype=np.object_,
                ).reshape(array.shape)
            except UnicodeDecodeError:
                raise InvalidArgumentError(
                    f"input '{name}' holds bytes that are not valid UTF-8, which ONNX Runtime "
                    "string tensors cannot carry"
                ) from None
        return array

    def close(self) -> None:
        super().close()
        del self._session


def _from_ort(value: np.ndarray) -> np.ndarray:
    if value.dtype == np.object_:
        out = np.empty(value.shape, dtype=np.object_)
        out.reshape(-1)[:] = [
            x.encode("utf-8") if isinstance(x, str) else x for x in value.reshape(-1)
        ]
        return out
    return value


def _as_ort_value(array: Any) -> ort.OrtValue:
    if isinstance(array, np.ndarray) and array.dtype == ml_dtypes.bfloat16:
        return ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
            np.ascontiguousarray(array).view(np.uint16), ONNX_BFLOAT16
        )
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))


def _from_ort_value(value: ort.OrtValue) -> np.ndarray:
    if value.data_type() != "tensor(bfloat16)":
        return _from_ort(value.numpy())
    shape = tuple(value.shape())
    count = int(np.prod(shape)) if shape else 1
    if count == 0:
        return np.zeros(shape, dtype=ml_dtypes.bfloat16)
    raw = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    return np.ctypeslib.as_array(raw).copy().view(ml_dtypes.bfloat16).reshape(shape)


def _add_tensor(target: Any, tensor: Any, skip: int) -> None:
    data_type = ORT_TO_CONFIG.get(tensor.type)
    if data_type is None:
        raise ModelConfigError(f"unsupported ONNX tensor type '{tensor.type}' for '{tensor.name}'")
    target.name = tensor.name
    target.data_type = data_type
    dims = ort_dims(tensor.shape)[skip:]
    target.dims.extend(dims if dims else [1])


def _instance_count(config: mc.ModelConfig) -> int:
    return max(1, sum(group.count for group in config.instance_group))


def _parameter(config: mc.ModelConfig, key: str) -> str | None:
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return None


def _int_parameter(config: mc.ModelConfig, key: str) -> int | None:
    raw = _parameter(config, key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ModelConfigError(
            f"model '{config.name}': parameter '{key}' must be an integer, got '{raw}'"
        ) from None


_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    0: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


def default_intra_op_threads(instance_count: int) -> int:
    """ORT threads per instance when the config sets none: the cores this process may use,
    less one for the event loop that parses and answers requests, split among instances.

    A second ORT thread that has to share the loop's core costs more than it saves: on
    2 cores, the MLP at concurrency 8 served 15-23 % more requests with one intra-op
    thread than with two, and as many at concurrency 1 (docs/performance.md).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, (cores - 1) // max(1, instance_count))


def _session_options(config: mc.ModelConfig, instance_count: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    intra = _int_parameter(config, "intra_op_thread_count")
    options.intra_op_num_threads = intra if intra else default_intra_op_threads(instance_count)
    inter = _int_parameter(config, "inter_op_thread_count")
    if inter:
        options.inter_op_num_threads = inter
    if _int_parameter(config, "execution_mode") == 1:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    arena = _int_parameter(config, "enable_mem_arena")
    if arena is not None:
        options.enable_cpu_mem_arena = bool(arena)
    pattern = _int_parameter(config, "enable_mem_pattern")
    if pattern is not None:
        options.enable_mem_pattern = bool(pattern)
    spinning = _parameter(config, "intra_op_allow_spinning") or "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    if config.optimization.HasField("graph"):
        level = config.optimization.graph.level
        options.graph_optimization_level = _GRAPH_LEVELS.get(
            level, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
    options.log_severity_level = 3
    return options


def _open_session(path: Path, options: ort.SessionOptions, source: str) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for corrupt models
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"failed to load ONNX model {source}: {first_line}") from None
