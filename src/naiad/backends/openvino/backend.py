"""OpenVINO backend: a model compiled once per version, one infer request per instance.

Reads IR (``model.xml`` + ``model.bin``, the default) or any format OpenVINO reads
(``default_model_filename: "model.onnx"``, ...). Config ``parameters`` use the keys of
Triton's OpenVINO backend: ``PERFORMANCE_HINT`` (LATENCY, THROUGHPUT),
``INFERENCE_NUM_THREADS``, ``COMPILATION_NUM_THREADS``, ``NUM_STREAMS`` (a number, AUTO
or NUMA), ``HINT_BF16`` and ``RESHAPE_IO_LAYERS`` (reshape the model's inputs to the
config's dims). Auto-complete follows Triton's: inputs and outputs from the model, and
``max_batch_size`` 4 when the layout marks every input's first dimension as the batch.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance, ThreadedInstance
from naiad.backends.openvino.properties import compile_properties, reshape_io_layers
from naiad.backends.openvino.types import batch_first, config_type, port_dims
from naiad.backends.parameters import first_line
from naiad.errors import InternalError, ModelConfigError, ModelLoadError

DEFAULT_MODEL_FILENAME = "model.xml"
# Triton's --backend-config default-max-batch-size, used by auto-complete.
DEFAULT_MAX_BATCH_SIZE = 4


@dataclass(eq=False)
class _Compiled:
    """A compiled model shared by a version's instances (weak-referenceable)."""

    model: Any
    inputs: dict[str, Any]
    outputs: dict[str, Any]


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self) -> None:
        self._core = ov.Core()
        self._lock = threading.Lock()
        self._compiled: weakref.WeakValueDictionary[tuple[Path, str], _Compiled] = (
            weakref.WeakValueDictionary()
        )

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        filename = config.default_model_filename or DEFAULT_MODEL_FILENAME
        path = next((d / filename for d in version_dirs if (d / filename).exists()), None)
        if path is None:
            return  # loading reports the missing file with its path
        model = self._read(path, config.name)
        inputs, outputs = list(model.inputs), list(model.outputs)
        batchable = all(batch_first(port) for port in inputs) and all(
            (port_dims(port) or [0])[:1] == [-1] for port in [*inputs, *outputs]
        )
        if config.max_batch_size == 0 and batchable:
            config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
            if not config.HasField("dynamic_batching") and not config.HasField("sequence_batching"):
                config.dynamic_batching.SetInParent()
        skip = 1 if config.max_batch_size > 0 else 0
        if not config.input:
            for port in inputs:
                _add_tensor(config.input.add(), port, skip, config.name)
        if not config.output:
            for port in outputs:
                _add_tensor(config.output.add(), port, skip, config.name)

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        path = context.model_file(DEFAULT_MODEL_FILENAME)
        if not path.exists():
            raise ModelLoadError(f"unable to find '{path}' for model '{context.name}'")
        key = (path, context.config.SerializeToString().hex())
        with self._lock:
            compiled = self._compiled.get(key)
            if compiled is None:
                compiled = self._compile(path, context)
                self._compiled[key] = compiled
        return OpenVinoInstance(context, compiled)

    def _read(self, path: Path, name: str) -> Any:
        try:
            return self._core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError for unreadable models
            raise ModelLoadError(
                f"unable to load model '{name}': OpenVINO cannot read {path}: {_reason(exc)}"
            ) from None

    def _compile(self, path: Path, context: ModelContext) -> _Compiled:
        config = context.config
        model = self._read(path, context.name)
        names = {name: port for port in model.inputs for name in port.get_names()}
        out_names = {name: port for port in model.outputs for name in port.get_names()}
        for kind, tensors, available in (
            ("input", config.input, names),
            ("output", config.output, out_names),
        ):
            for tensor in tensors:
                if tensor.name not in available:
                    raise ModelLoadError(
                        f"unable to load model '{context.name}', configuration expects {kind} "
                        f"'{tensor.name}', which the model does not provide (it has "
                        f"{', '.join(sorted(available))})"
                    )
        if reshape_io_layers(config):
            batch = [-1] if config.max_batch_size > 0 else []
            model.reshape(
                {names[t.name]: ov.PartialShape(batch + list(t.dims)) for t in config.input}
            )
        try:
            compiled = self._core.compile_model(model, "CPU", compile_properties(config))
        except Exception as exc:  # OpenVINO raises RuntimeError for unsupported models
            raise ModelLoadError(
                f"unable to load model '{context.name}': OpenVINO cannot compile {path}: "
                f"{_reason(exc)}"
            ) from None
        return _Compiled(
            compiled,
            {t.name: compiled.input(t.name) for t in config.input},
            {t.name: compiled.output(t.name) for t in config.output},
        )


def _reason(exc: BaseException) -> str:
    """OpenVINO's message without its "Exception from file.cpp:line:" location lines."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith(("Exception from", "Check '"))]
    return kept[0] if kept else first_line(exc)


def _add_tensor(target: Any, port: Any, skip: int, model: str) -> None:
    target.name = port.get_any_name()
    target.data_type = config_type(port)
    if target.data_type == mc.TYPE_INVALID:
        raise ModelConfigError(
            f"model '{model}': tensor '{target.name}' has OpenVINO type "
            f"{port.get_element_type()}, which Triton has no config type for"
        )
    dims = port_dims(port)
    if dims is None:
        raise ModelConfigError(
            f"model '{model}': tensor '{target.name}' has a dynamic rank; give its dims in "
            "config.pbtxt"
        )
    target.dims.extend(dims[skip:] or [1])


class OpenVinoInstance(ThreadedInstance):
    def __init__(self, context: ModelContext, compiled: _Compiled) -> None:
        super().__init__(thread_name=f"ov-{context.name}")
        self._compiled = compiled
        self._request = compiled.model.create_infer_request()

    def run(
        self, inputs: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        ports = self._compiled.inputs
        feeds = {ports[name]: np.ascontiguousarray(array) for name, array in inputs.items()}
        try:
            self._request.infer(feeds)
        except Exception as exc:  # OpenVINO raises RuntimeError for bad shapes and the like
            raise InternalError(f"OpenVINO inference failed: {_reason(exc)}") from None
        outputs = self._compiled.outputs
        # The request reuses its output buffers on the next run, so copy them out.
        return {name: self._request.get_tensor(outputs[name]).data.copy() for name in output_names}

    def close(self) -> None:
        super().close()
        del self._request
        del self._compiled
