"""Mapping between ONNX Runtime's type strings and Triton's config data types."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

ORT_TO_CONFIG: dict[str, int] = {
    "tensor(bool)": mc.TYPE_BOOL,
    "tensor(uint8)": mc.TYPE_UINT8,
    "tensor(uint16)": mc.TYPE_UINT16,
    "tensor(uint32)": mc.TYPE_UINT32,
    "tensor(uint64)": mc.TYPE_UINT64,
    "tensor(int8)": mc.TYPE_INT8,
    "tensor(int16)": mc.TYPE_INT16,
    "tensor(int32)": mc.TYPE_INT32,
    "tensor(int64)": mc.TYPE_INT64,
    "tensor(float16)": mc.TYPE_FP16,
    "tensor(float)": mc.TYPE_FP32,
    "tensor(double)": mc.TYPE_FP64,
    "tensor(string)": mc.TYPE_STRING,
    "tensor(bfloat16)": mc.TYPE_BF16,
}

# ONNX TensorProto element type of BF16 (ORT's numpy bridge has no bfloat16).
ONNX_BFLOAT16 = 16


def ort_dims(shape: list[object]) -> list[int]:
    """ORT reports a dynamic dim as a symbol name or None; Triton writes -1."""
    return [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in shape]
