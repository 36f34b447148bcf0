"""Backends by name, imported lazily: a model that names a backend pulls in only its code.

Each entry maps a config ``backend`` name to ``"module:Class"`` plus the extra that
provides its framework, so a missing framework gives an error naming what to install.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass

from naiad.backends.base import Backend
from naiad.errors import ModelLoadError, UnsupportedError


@dataclass(frozen=True, slots=True)
class BackendEntry:
    import_path: str
    # The pip extra that installs the framework this backend needs ("" when built in).
    extra: str = ""


BACKENDS: dict[str, BackendEntry] = {
    "onnxruntime": BackendEntry("naiad.backends.onnxruntime.backend:OnnxRuntimeBackend"),
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

    def __init__(self, entries: dict[str, BackendEntry] | None = None) -> None:
        self._entries = dict(BACKENDS if entries is None else entries)
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
                raise ModelLoadError(
                    f"unable to find backend '{name}'; available backends: "
                    f"{', '.join(self.names())}"
                )
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
