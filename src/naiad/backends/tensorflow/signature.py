"""What a SavedModel's signature says about its tensors, for loading and auto-complete.

The signature is read from ``saved_model.pb`` with TensorFlow's own protobuf classes,
picking the meta graph by tag (``TF_GRAPH_TAG``, default ``serve``) and the signature by
key (``TF_SIGNATURE_DEF``, default ``serving_default``), as Triton's TensorFlow
backend does. Config tensor names are the signature's keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import ModelLoadError

DEFAULT_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"

TF_TO_CONFIG: dict[int, int] = {
    types_pb2.DT_BOOL: mc.TYPE_BOOL,
    types_pb2.DT_UINT8: mc.TYPE_UINT8,
    types_pb2.DT_UINT16: mc.TYPE_UINT16,
    types_pb2.DT_UINT32: mc.TYPE_UINT32,
    types_pb2.DT_UINT64: mc.TYPE_UINT64,
    types_pb2.DT_INT8: mc.TYPE_INT8,
    types_pb2.DT_INT16: mc.TYPE_INT16,
    types_pb2.DT_INT32: mc.TYPE_INT32,
    types_pb2.DT_INT64: mc.TYPE_INT64,
    types_pb2.DT_HALF: mc.TYPE_FP16,
    types_pb2.DT_FLOAT: mc.TYPE_FP32,
    types_pb2.DT_DOUBLE: mc.TYPE_FP64,
    types_pb2.DT_STRING: mc.TYPE_STRING,
    types_pb2.DT_BFLOAT16: mc.TYPE_BF16,
}


@dataclass(frozen=True, slots=True)
class SignatureTensor:
    key: str
    # The graph tensor the key stands for ("serving_default_x:0").
    tensor_name: str
    data_type: int
    # None: unknown rank; -1: unknown size.
    dims: tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: dict[str, SignatureTensor]
    outputs: dict[str, SignatureTensor]


def read_signature(saved_model_dir: Path, tag: str, key: str, model_name: str) -> Signature:
    path = saved_model_dir / "saved_model.pb"
    message = saved_model_pb2.SavedModel()
    try:
        message.ParseFromString(path.read_bytes())
    except Exception as exc:  # OSError or protobuf's DecodeError
        raise ModelLoadError(
            f"unable to load model '{model_name}': failed to read SavedModel {path}: {exc}"
        ) from None
    graphs = [graph for graph in message.meta_graphs if tag in graph.meta_info_def.tags]
    if not graphs:
        raise ModelLoadError(
            f"unable to load model '{model_name}': SavedModel {saved_model_dir} has no meta "
            f"graph with tag '{tag}'"
        )
    signatures = graphs[0].signature_def
    if key not in signatures:
        available = ", ".join(sorted(k for k in signatures if not k.startswith("__")))
        raise ModelLoadError(
            f"unable to load model '{model_name}': SavedModel has no signature '{key}' "
            f"(signatures: {available or 'none'})"
        )
    signature = signatures[key]
    return Signature(_tensors(signature.inputs), _tensors(signature.outputs))


def _tensors(infos: dict[str, meta_graph_pb2.TensorInfo]) -> dict[str, SignatureTensor]:
    tensors = {}
    for key in sorted(infos):  # protobuf maps have no order; sort for stable configs
        info = infos[key]
        shape = info.tensor_shape
        dims = None if shape.unknown_rank else tuple(int(d.size) for d in shape.dim)
        tensors[key] = SignatureTensor(
            key, info.name, TF_TO_CONFIG.get(info.dtype, mc.TYPE_INVALID), dims
        )
    return tensors


def batchable(signature: Signature) -> bool:
    """Every input and output has a first dimension of unknown size."""
    tensors = [*signature.inputs.values(), *signature.outputs.values()]
    return bool(tensors) and all(t.dims is not None and t.dims[:1] == (-1,) for t in tensors)
