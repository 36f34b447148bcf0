"""Backends that are not built in, found per model as Triton finds them.

For ``backend: "<name>"``, Naiad looks, in Triton's order, in the model's version
directory, the model directory, and ``<--backend-directory>/<name>/`` for the
python-based backend file (``model.py``, or the config's ``runtime``); a model found
there runs on the python backend's workers. Failing that, an installed package that
publishes ``<name>`` under the ``naiad.backends`` entry-point group (the Naiad backend
API, ``api.py``) serves it in-process.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import Backend, InstanceSpec, ModelContext, ModelInstance
from naiad.backends.python import api
from naiad.backends.python.backend import PythonBackend
from naiad.backends.python.custom import NaiadApiBackend
from naiad.backends.python.sources import (
    DEFAULT_MODEL_FILENAME,
    ModelSource,
    backend_search_dirs,
    find_backend_source,
)
from naiad.errors import ModelLoadError

logger = logging.getLogger("naiad.python")


class ExternalBackend(Backend):
    def __init__(
        self, name: str, backend_directory: Path | None, built_in: Sequence[str] = ()
    ) -> None:
        self.name = name
        self._backend_directory = backend_directory
        self._built_in = list(built_in)
        self._lock = threading.Lock()
        self._python: PythonBackend | None = None
        self._plugin: NaiadApiBackend | None = None
        self._plugin_searched = False

    def auto_complete_config(
        self, config: mc.ModelConfig, model_dir: Path, version_dirs: Sequence[Path]
    ) -> None:
        if not version_dirs:
            return
        target = self._resolve(config, model_dir, int(version_dirs[0].name))
        if isinstance(target, NaiadApiBackend):
            target.auto_complete_config(config, model_dir, version_dirs)
        else:
            self._python_backend().complete_config(config, model_dir, target)

    def create_instance(self, context: ModelContext, spec: InstanceSpec) -> ModelInstance:
        target = self._resolve(context.config, context.model_dir, context.version)
        if isinstance(target, NaiadApiBackend):
            return target.create_instance(context, spec)
        return self._python_backend().start_instance(context, spec, target)

    def _resolve(
        self, config: mc.ModelConfig, model_dir: Path, version: int
    ) -> ModelSource | NaiadApiBackend:
        runtime = config.runtime or DEFAULT_MODEL_FILENAME
        if runtime.endswith(".py"):
            source = find_backend_source(
                self.name, config, model_dir, version, self._backend_directory
            )
            if source is not None:
                return source
        plugin = self._installed_plugin()
        if plugin is not None:
            return plugin
        searched = ", ".join(
            str(d)
            for d in backend_search_dirs(self.name, model_dir, version, self._backend_directory)
        )
        hint = "" if self._backend_directory else " (no --backend-directory given)"
        raise ModelLoadError(
            f"unable to find backend '{self.name}' for model '{config.name}': no '{runtime}' in "
            f"{searched}{hint}, and no installed package provides it (entry point group "
            f"'{api.ENTRY_POINT_GROUP}'); built-in backends: {', '.join(self._built_in)}"
        )

    def _python_backend(self) -> PythonBackend:
        with self._lock:
            if self._python is None:
                self._python = PythonBackend()
            return self._python

    def _installed_plugin(self) -> NaiadApiBackend | None:
        with self._lock:
            if not self._plugin_searched:
                self._plugin_searched = True
                self._plugin = self._load_plugin()
            return self._plugin

    def _load_plugin(self) -> NaiadApiBackend | None:
        found = list(importlib.metadata.entry_points(group=api.ENTRY_POINT_GROUP, name=self.name))
        if not found:
            return None
        if len(found) > 1:
            logger.warning(
                "backend '%s' is provided by several packages; using %s", self.name, found[0].value
            )
        entry = found[0]
        try:
            loaded = entry.load()
            backend = loaded() if isinstance(loaded, type) else loaded
        except Exception as exc:
            raise ModelLoadError(
                f"backend '{self.name}' ({entry.value}) cannot be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(backend, api.Backend):
            raise ModelLoadError(
                f"backend '{self.name}' ({entry.value}) is not a naiad.backends.python.api.Backend"
            )
        logger.info("backend '%s': using %s from an installed package", self.name, entry.value)
        return NaiadApiBackend(self.name, backend)
