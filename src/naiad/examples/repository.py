"""The bundled example model repository: what ``naiad serve`` serves when given no repository.

Nothing binary is shipped: the ONNX models are generated from :mod:`naiad.examples.onnx_models`
and the configs below are plain ``config.pbtxt`` text. Models:

- ``simple``: Triton's classic INT32 add/sub, ``INPUT0``/``INPUT1`` [16] -> ``OUTPUT0`` (sum),
  ``OUTPUT1`` (difference), ``max_batch_size: 8``.
- ``simple_string``: the same with BYTES tensors holding decimal strings.
- ``mlp``: an FP32 classifier [-1, 256] -> 1024 -> 1024 -> 10 with a 10-entry ``labels.txt``, so
  the classification extension works.
- ``identity_fp32``: no ``config.pbtxt`` at all; the server completes the config from the model.

:func:`example_repository` keeps one generated copy per Naiad version in the user's cache
directory, so only the first start pays for generating it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from naiad import __version__

SIMPLE_CONFIG = """\
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
"""

SIMPLE_STRING_CONFIG = """\
name: "simple_string"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_STRING
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_STRING
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_STRING
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_STRING
    dims: [ 16 ]
  }
]
"""

MLP_CONFIG = """\
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_FP32
    dims: [ 256 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_FP32
    dims: [ 10 ]
    label_filename: "labels.txt"
  }
]
"""

MLP_LABELS = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


@dataclass(frozen=True, slots=True)
class ExampleModel:
    """One model of the example repository; ``config`` is ``None`` for auto-completed models."""

    name: str
    config: str | None
    build: Callable[[], bytes]
    extra_files: tuple[tuple[str, str], ...] = ()


def _onnx_models() -> ModuleType:
    # Imported only when a model is generated: ``onnx`` takes ~0.1 s to import, and once the
    # cached copy exists a server start should not pay for it.
    from naiad.examples import onnx_models

    return onnx_models


EXAMPLE_MODELS: tuple[ExampleModel, ...] = (
    ExampleModel("simple", SIMPLE_CONFIG, lambda: _onnx_models().add_sub("INT32")),
    ExampleModel("simple_string", SIMPLE_STRING_CONFIG, lambda: _onnx_models().add_sub("BYTES")),
    ExampleModel(
        "mlp",
        MLP_CONFIG,
        lambda: _onnx_models().mlp(),
        (("labels.txt", "\n".join(MLP_LABELS) + "\n"),),
    ),
    ExampleModel("identity_fp32", None, lambda: _onnx_models().identity("FP32", [-1])),
)


def write_example_repository(path: Path) -> Path:
    """Write the example repository into ``path`` (created if missing) and return ``path``.

    Existing files of the same names are overwritten; other entries in ``path`` are left alone.
    """
    path.mkdir(parents=True, exist_ok=True)
    for model in EXAMPLE_MODELS:
        model_dir = path / model.name
        version_dir = model_dir / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / "model.onnx").write_bytes(model.build())
        if model.config is not None:
            (model_dir / "config.pbtxt").write_text(model.config, encoding="utf-8")
        for filename, text in model.extra_files:
            (model_dir / filename).write_text(text, encoding="utf-8")
    return path


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/naiad`` or ``~/.cache/naiad``."""
    base = os.environ.get("XDG_CACHE_HOME")
    # XDG says a relative XDG_CACHE_HOME is invalid and must be ignored.
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "naiad"


def example_repository() -> Path:
    """The example repository in the user's cache, generated on first use.

    Generation writes into a temporary directory beside the target and renames it into
    place, so a reader never sees a half-written repository. When two processes race, the
    first rename wins and the loser discards its copy and uses the winner's.
    """
    target = cache_root() / "example-repository" / __version__
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        # Incomplete (someone deleted files by hand): move it aside atomically first, so a
        # concurrent reader either sees the old directory or none, never one being deleted.
        _discard(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write_example_repository(staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process renamed its copy into place first (ENOTEMPTY / EEXIST).
            if not _is_complete(target):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_complete(path: Path) -> bool:
    """Every file the example repository should hold is present (cheap: a few ``stat`` calls)."""
    for model in EXAMPLE_MODELS:
        model_dir = path / model.name
        expected = [model_dir / "1" / "model.onnx"]
        if model.config is not None:
            expected.append(model_dir / "config.pbtxt")
        expected += [model_dir / filename for filename, _ in model.extra_files]
        if not all(p.is_file() for p in expected):
            return False
    return True


def _discard(path: Path) -> None:
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.stale.", dir=path.parent))
    with contextlib.suppress(OSError):  # a concurrent process may have moved it already
        path.rename(aside / "repository")
    shutil.rmtree(aside, ignore_errors=True)
