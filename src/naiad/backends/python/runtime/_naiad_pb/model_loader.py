"""Import a model's ``model.py`` the way Triton's stub does, and find ``TritonPythonModel``.

Triton appends the version directory and the model directory to ``sys.path`` and
imports ``<version>.model``, so ``from .helpers import x`` works inside a model. The
file named by the server is loaded exactly (not whatever ``<version>`` resolves to on
``sys.path``); python-based backends are imported as a top-level module.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import Any

from .errors import TritonModelException
from .messages import ModelSourceInfo


def load_model_class(source: ModelSourceInfo) -> Any:
    for path in source.sys_paths:
        if path not in sys.path:
            sys.path.append(path)
    name = source.module_name
    package, _, _ = name.rpartition(".")
    if package and package not in sys.modules:
        # The version directory as a package, so relative imports inside model.py work.
        module = types.ModuleType(package)
        module.__path__ = [os.path.dirname(source.module_file)]
        sys.modules[package] = module
    spec = importlib.util.spec_from_file_location(name, source.module_file)
    if spec is None or spec.loader is None:
        raise TritonModelException(f"Python model file not found in '{source.module_file}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    model_class = getattr(module, "TritonPythonModel", None)
    if model_class is None:
        raise TritonModelException(
            f"Python model file '{source.module_file}' does not define class TritonPythonModel"
        )
    return model_class
