"""Complete a SavedModel's config from its signature, following Triton's TensorFlow rules.

``max_batch_size`` becomes 4 (Triton's ``default-max-batch-size``) when it is 0 and
every signature tensor has an unknown first dimension; a batching model with no
scheduler gets ``dynamic_batching``. Missing inputs are all filled in; outputs are all
filled in when none is given, else only the given ones are completed. GraphDef models
carry no such metadata, so, as in Triton, their configs must be complete.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.tensorflow.signature import Signature, SignatureTensor, batchable
from naiad.errors import ModelConfigError

DEFAULT_MAX_BATCH_SIZE = 4


def complete_config(config: mc.ModelConfig, signature: Signature) -> None:
    if config.max_batch_size == 0 and batchable(signature):
        config.max_batch_size = DEFAULT_MAX_BATCH_SIZE
    if (
        config.max_batch_size > 1
        and not config.HasField("dynamic_batching")
        and not config.HasField("sequence_batching")
    ):
        config.dynamic_batching.SetInParent()
    skip = 1 if config.max_batch_size > 0 else 0
    if not config.input:
        for tensor in signature.inputs.values():
            _fill(config.input.add(), tensor, skip, config.name)
    else:
        _complete_given(config.input, signature.inputs, skip, config.name)
    if not config.output:
        for tensor in signature.outputs.values():
            _fill(config.output.add(), tensor, skip, config.name)
    else:
        _complete_given(config.output, signature.outputs, skip, config.name)


def _complete_given(given: Any, tensors: dict[str, SignatureTensor], skip: int, model: str) -> None:
    for target in given:
        tensor = tensors.get(target.name)
        if tensor is not None:
            _fill(target, tensor, skip, model)


def _fill(target: Any, tensor: SignatureTensor, skip: int, model: str) -> None:
    target.name = tensor.key
    if target.data_type == mc.TYPE_INVALID:
        if tensor.data_type == mc.TYPE_INVALID:
            raise ModelConfigError(
                f"model '{model}': signature tensor '{tensor.key}' has a data type Triton "
                "has no config type for"
            )
        target.data_type = tensor.data_type
    if not target.dims and not target.HasField("reshape"):
        if tensor.dims is None:
            raise ModelConfigError(
                f"model '{model}': signature tensor '{tensor.key}' has unknown rank; give "
                "its dims in config.pbtxt"
            )
        dims = list(tensor.dims[skip:])
        # Triton cannot auto-complete scalars; [1] with an empty reshape is its spelling.
        if not dims:
            target.dims.append(1)
            target.reshape.SetInParent()
        else:
            target.dims.extend(dims)
