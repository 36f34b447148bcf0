"""Load a PyTorch model file: TorchScript (``torch.jit.save``) or an exported program.

An exported program is the archive ``torch.export.save`` writes (``model.pt2``). An
AOTInductor package is also a ``.pt2`` archive but holds compiled code; it is refused
with a clear message rather than run.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from naiad.backends.parameters import first_line
from naiad.errors import ModelLoadError


@dataclass(eq=False)
class LoadedModel:
    """A loaded model and what the backend needs to call it (weak-referenceable)."""

    module: Callable[..., Any]
    # Names of forward's arguments, self excluded.
    forward_args: list[str]
    dict_input: bool
    torchscript: bool


def load_model(path: Path, model_name: str) -> LoadedModel:
    if not path.exists():
        raise ModelLoadError(f"unable to find '{path}' for model instance '{model_name}'")
    if path.suffix == ".pt2":
        return _load_exported(path, model_name)
    return _load_torchscript(path, model_name)


def _load_torchscript(path: Path, model_name: str) -> LoadedModel:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # torch raises RuntimeError, ValueError, ... for bad files
        raise ModelLoadError(
            f"failed to load model '{model_name}': {first_line(exc)} ({path})"
        ) from None
    module.eval()
    arguments = list(module.forward.schema.arguments)
    if arguments and arguments[0].type.kind() == "ClassType":
        arguments = arguments[1:]
    kinds = [argument.type.kind() for argument in arguments]
    if len(arguments) == 1 and kinds[0] == "DictType":
        return LoadedModel(module, [arguments[0].name], dict_input=True, torchscript=True)
    for argument, kind in zip(arguments, kinds, strict=True):
        if kind != "TensorType":
            # Triton also takes List[str] inputs; this server carries tensors only.
            raise ModelLoadError(
                f"failed to load model '{model_name}': an input of type "
                f"'{argument.type}' was detected in the model ('{argument.name}'). Only a "
                "single input of type Dict(str, Tensor) or input(s) of type Tensor are "
                "supported."
            )
    return LoadedModel(
        module, [argument.name for argument in arguments], dict_input=False, torchscript=True
    )


def _load_exported(path: Path, model_name: str) -> LoadedModel:
    if _is_aoti_package(path):
        raise ModelLoadError(
            f"failed to load model '{model_name}': {path} is an AOTInductor package, which "
            "this server does not run; serve the torch.export program (torch.export.save) "
            "as model.pt2 instead"
        )
    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as exc:  # corrupt archives raise a range of torch/zip errors
        raise ModelLoadError(
            f"failed to load model '{model_name}': {first_line(exc)} ({path})"
        ) from None
    forward_args = list(program.graph_signature.user_inputs)
    return LoadedModel(module, forward_args, dict_input=False, torchscript=False)


def _is_aoti_package(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/data/aotinductor/" in name for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False  # not a zip at all: torch.export.load reports it
