"""Backends by name, imported lazily: a model that names a backend pulls in only its code.

Each entry maps a config ``backend`` name to ``"module:Class"`` plus the extra that
provides its framework, so a missing framework gives an error naming what to install.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path

from naiad.backends.base import Backend
from naiad.errors import ModelLoadError, UnsupportedError


@dataclass(frozen=True, slots=True)
class BackendEntry:
    import_path: str
    # The pip extra that installs the framework this backend needs ("" when built in).
    extra: str = ""


BACKENDS: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("naiad.backends.onnxruntime.backend:OnnxRuntimeBackend"),
    "python": BackendEntry("naiad.backends.python.backend:PythonBackend"),
    "pytorch": BackendEntry("naiad.backends.pytorch.backend:PyTorchBackend", extra="torch"),
    "tensorflow": BackendEntry(
        "naiad.backends.tensorflow.backend:TensorflowBackend", extra="tensorflow"
    ),
    "openvino": BackendEntry("naiad.backends.openvino.backend:OpenVinoBackend", extra="openvino"),
    "fil": BackendEntry("naiad.backends.fil.backend:FilBackend", extra="fil"),
}

# Backends Triton has that need hardware or builds this server does not offer.
UNAVAILABLE_BACKENDS: dict[str, str] = {
    "tensorrt": "TensorRT needs an NVIDIA GPU and the tensorrt package",
    "tensorrtllm": "TensorRT-LLM needs an NVIDIA GPU",
    "dali": "DALI needs an NVIDIA GPU",
    "vllm": "vLLM needs a GPU build of vllm",
}


class BackendRegistry:
    """Resolves backend names to shared :class:`Backend` objects, importing on first use."""

    def __init__(
        self, entries: dict[str, BackendEntry] | None = None, backend_directory: Path | None = None
    ) -> None:
        self._entries = dict(BACKENDS if entries is None else entries)
        # --backend-directory: where python-based backends live (<dir>/<name>/model.py).
        self._backend_directory = backend_directory
        self._loaded: dict[str, Backend] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Backend:
        with self._lock:
            backend = self._loaded.get(name)
            if backend is not None:
                return backend
            entry = self._entries.get(name)
            if entry is None:
                if name in UNAVAILABLE_BACKENDS:
                    raise UnsupportedError(
                        f"backend '{name}' is not available on this build/machine: "
                        f"{UNAVAILABLE_BACKENDS[name]}"
                    )
                # Not built in: a python-based backend file or an installed backend package,
                # looked up per model (Triton searches the model's own directories first).
                from naiad.backends.python.external import ExternalBackend

                external = ExternalBackend(name, self._backend_directory, self.names())
                self._loaded[name] = external
                return external
            module_name, _, class_name = entry.import_path.partition(":")
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                hint = (
                    f" (install it with: pip install 'naiad[{entry.extra}]')" if entry.extra else ""
                )
                raise ModelLoadError(f"backend '{name}' cannot be imported: {exc}{hint}") from None
            backend = getattr(module, class_name)()
            self._loaded[name] = backend
            return backend
