"""PyTorch backend: TorchScript and torch.export models, one module call per execution.

Follows Triton's PyTorch backend: default file ``model.pt`` (``model.pt2`` for an
exported program), tensor names mapped to positions by Triton's naming conventions
(``naming.py``), execution under ``torch.inference_mode()`` unless ``INFERENCE_MODE``
is false, and thread counts from ``INTRA_OP_THREAD_COUNT`` / ``INTER_OP_THREAD_COUNT``,
which, as in Triton, are process-wide: the first model that sets one wins. Unset, the
intra-op count is the machine's cores less one (Triton: all cores), see below. Like
Triton, it does not auto-complete configs: TorchScript carries no tensor metadata.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance, ThreadedInstance
from naiad.backends.parameters import first_line
from naiad.backends.pytorch.convert import CONFIG_TO_TORCH, TORCH_TO_CONFIG, to_numpy, to_tensor
from naiad.backends.pytorch.loading import LoadedModel, load_model
from naiad.backends.pytorch.naming import input_positions, output_positions
from naiad.backends.pytorch.options import TorchOptions
from naiad.errors import InternalError, InvalidArgumentError, ModelConfigError

logger = logging.getLogger("naiad.backends.pytorch")

TORCHSCRIPT_FILENAME = "model.pt"
EXPORTED_FILENAME = "model.pt2"


class PyTorchBackend(Backend):
    name = "pytorch"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # ENABLE_WEIGHT_SHARING: instances of one model version share one module.
        self._shared: weakref.WeakValueDictionary[Path, LoadedModel] = weakref.WeakValueDictionary()
        self._threads: dict[str, int] = {}
        # Unless told otherwise, leave one core to the server's own threads (event loop,
        # gRPC): an OpenMP team as wide as the machine waits at every barrier for a worker
        # that the frontends have descheduled (on 2 cores, batch-1 throughput fell 4-6x).
        self._default_intra: int | None = None
        if "OMP_NUM_THREADS" not in os.environ:
            self._default_intra = max(1, (os.cpu_count() or 1) - 1)
            torch.set_num_threads(self._default_intra)

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        if not config.input or not config.output:
            logger.warning(
                "skipping model configuration auto-complete for '%s': not supported for "
                "pytorch backend",
                config.name,
            )

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        options = TorchOptions.from_config(context.config)
        self._set_threads(context.name, options)
        path = model_path(context)
        if options.weight_sharing:
            with self._lock:
                loaded = self._shared.get(path)
                if loaded is None:
                    loaded = load_model(path, context.name)
                    self._shared[path] = loaded
        else:
            loaded = load_model(path, context.name)
        intra = self._threads.get("intra", self._default_intra)
        return PyTorchInstance(context, loaded, options, intra)

    def _set_threads(self, model: str, options: TorchOptions) -> None:
        with self._lock:
            for kind, value in (
                ("intra", options.intra_op_threads),
                ("inter", options.inter_op_threads),
            ):
                if value is None:
                    continue
                current = self._threads.get(kind)
                if current is not None:
                    if current != value:
                        logger.warning(
                            "model '%s': %s-op thread count %d ignored; it is process-wide "
                            "and already set to %d",
                            model,
                            kind,
                            value,
                            current,
                        )
                    continue
                try:
                    if kind == "intra":
                        torch.set_num_threads(value)
                    else:
                        torch.set_num_interop_threads(value)
                except RuntimeError as exc:  # inter-op pool already started
                    logger.warning("model '%s': %s", model, first_line(exc))
                    continue
                self._threads[kind] = value


def model_path(context: ModelContext) -> Path:
    """``default_model_filename``, else ``model.pt``, else ``model.pt2`` if only it exists."""
    if context.config.default_model_filename:
        return context.version_dir / context.config.default_model_filename
    if context.config.platform == "torch_aoti":
        return context.version_dir / EXPORTED_FILENAME
    torchscript = context.version_dir / TORCHSCRIPT_FILENAME
    exported = context.version_dir / EXPORTED_FILENAME
    return exported if not torchscript.exists() and exported.exists() else torchscript


class PyTorchInstance(ThreadedInstance):
    def __init__(
        self,
        context: ModelContext,
        loaded: LoadedModel,
        options: TorchOptions,
        intra_op_threads: int | None,
    ) -> None:
        config = context.config
        for tensor in [*config.input, *config.output]:
            if tensor.data_type not in CONFIG_TO_TORCH:
                raise ModelConfigError(
                    f"unsupported datatype {mc.DataType.Name(tensor.data_type)} for "
                    f"'{tensor.name}' of model '{context.name}'"
                )
        names = [tensor.name for tensor in config.input]
        self._positions = (
            {} if loaded.dict_input else input_positions(context.name, names, loaded.forward_args)
        )
        self._output_positions = output_positions(context.name, [t.name for t in config.output])
        self._output_types = {tensor.name: tensor.data_type for tensor in config.output}
        self._loaded = loaded
        self._options = options
        self._name = context.name
        super().__init__(thread_name=f"torch-{context.name}")
        if intra_op_threads is not None:
            # torch applies the intra-op thread count per thread (OpenMP), so set it on
            # the thread that will run the model too.
            self._executor.call(torch.set_num_threads, intra_op_threads)

    def run(
        self, inputs: dict[str, np.ndarray], output_names: Sequence[str]
    ) -> dict[str, np.ndarray]:
        loaded = self._loaded
        with self._options.grad_mode():
            if loaded.torchscript:
                self._options.apply_jit()
            try:
                if loaded.dict_input:
                    result = loaded.module({k: to_tensor(v) for k, v in inputs.items()})
                else:
                    args: list[Any] = [None] * len(loaded.forward_args)
                    for name, array in inputs.items():
                        args[self._positions[name]] = to_tensor(array)
                    result = loaded.module(*args)
            except Exception as exc:  # a model's own error fails this batch only
                raise InternalError(f"PyTorch execute failure: {first_line(exc)}") from None
        outputs = result if isinstance(result, tuple | list) else (result,)
        return {name: self._output(name, outputs) for name in output_names}

    def _output(self, name: str, outputs: Sequence[Any]) -> np.ndarray:
        position = self._output_positions[name]
        if position >= len(outputs):
            raise InvalidArgumentError(
                f"The output {name} in the model configuration refers to an output index "
                f"which doesn't exist. This model has {len(outputs)} outputs"
            )
        value = outputs[position]
        if not isinstance(value, torch.Tensor):
            raise InternalError(
                f"output at index {position} must be of type Tensor, received "
                f"{type(value).__name__}"
            )
        expected = self._output_types[name]
        if TORCH_TO_CONFIG.get(value.dtype) != expected:
            raise InternalError(
                f"configuration expects datatype {mc.DataType.Name(expected)} for output "
                f"'{name}', model provides {value.dtype}"
            )
        return to_numpy(value)

    def close(self) -> None:
        super().close()
        del self._loaded
