"""Where a model's Python code is, and how the worker imports it.

* The python backend: ``<model>/<version>/model.py`` (or ``default_model_filename``),
  imported as ``<version>.model`` with the version and model directories on
  ``sys.path``, exactly as Triton's stub does.
* A python-based backend named ``backend: "<name>"``: Triton's search order, the
  version directory, then the model directory, then ``<backend-directory>/<name>/``;
  the file is ``model.py`` unless the config's ``runtime`` names another ``.py`` file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import ModelConfigError, ModelLoadError

DEFAULT_MODEL_FILENAME = "model.py"


@dataclass(frozen=True, slots=True)
class ModelSource:
    module_file: Path
    module_name: str
    sys_paths: tuple[str, ...]
    # What pb_utils.get_model_dir() returns: the version directory, as in Triton.
    model_dir: Path


def python_model_source(model_dir: Path, version: int, config: mc.ModelConfig) -> ModelSource:
    """The ``model.py`` of a python-backend model version."""
    version_dir = model_dir / str(version)
    filename = config.default_model_filename or DEFAULT_MODEL_FILENAME
    path = version_dir / filename
    if not path.is_file() or not _inside(path, version_dir):
        raise ModelLoadError(f"model.py does not exist in the model repository path: {path}")
    return _in_version_dir(path, model_dir, version)


def _in_version_dir(path: Path, model_dir: Path, version: int) -> ModelSource:
    version_dir = model_dir / str(version)
    return ModelSource(
        path, f"{version}.{path.stem}", (str(version_dir), str(model_dir)), version_dir
    )


def backend_search_dirs(
    name: str, model_dir: Path, version: int, backend_directory: Path | None
) -> list[Path]:
    dirs = [model_dir / str(version), model_dir]
    if backend_directory is not None:
        dirs.append(backend_directory / name)
    return dirs


def runtime_filename(name: str, config: mc.ModelConfig) -> str:
    """The file a python-based backend runs: ``runtime``, or ``model.py``."""
    runtime = config.runtime or DEFAULT_MODEL_FILENAME
    if "/" in runtime or "\\" in runtime or runtime in (".", ".."):
        raise ModelConfigError(
            f"runtime '{runtime}' of model '{config.name}' must be a file name, not a path"
        )
    if not runtime.endswith(".py"):
        raise ModelLoadError(
            f"backend '{name}' of model '{config.name}' names runtime '{runtime}': this server "
            "runs Python backends only (a .py runtime), not shared libraries"
        )
    return runtime


def find_backend_source(
    name: str,
    config: mc.ModelConfig,
    model_dir: Path,
    version: int,
    backend_directory: Path | None,
) -> ModelSource | None:
    """The python-based backend file for ``backend: name``, or None if there is none."""
    filename = runtime_filename(name, config)
    version_dir, model_root, *global_dirs = backend_search_dirs(
        name, model_dir, version, backend_directory
    )
    if (version_dir / filename).is_file():
        return _in_version_dir(version_dir / filename, model_dir, version)
    if (model_root / filename).is_file():
        return ModelSource(model_root / filename, filename[:-3], (str(model_root),), version_dir)
    for directory in global_dirs:
        if (directory / filename).is_file():
            # Shared by every model naming the backend; imported as a top-level module.
            return ModelSource(directory / filename, filename[:-3], (str(directory),), version_dir)
    return None


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())
