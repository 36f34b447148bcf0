"""OpenVINO element types as Triton config data types, and the model ports' shapes."""

from __future__ import annotations

from typing import Any

import openvino as ov
from tritonclient.grpc import model_config_pb2 as mc

OV_TO_CONFIG: dict[str, int] = {
    "boolean": mc.TYPE_BOOL,
    "u8": mc.TYPE_UINT8,
    "u16": mc.TYPE_UINT16,
    "u32": mc.TYPE_UINT32,
    "u64": mc.TYPE_UINT64,
    "i8": mc.TYPE_INT8,
    "i16": mc.TYPE_INT16,
    "i32": mc.TYPE_INT32,
    "i64": mc.TYPE_INT64,
    "f16": mc.TYPE_FP16,
    "f32": mc.TYPE_FP32,
    "f64": mc.TYPE_FP64,
    "bf16": mc.TYPE_BF16,
    "string": mc.TYPE_STRING,
}


def config_type(port: Any) -> int:
    return OV_TO_CONFIG.get(port.get_element_type().get_type_name(), mc.TYPE_INVALID)


def port_dims(port: Any) -> list[int] | None:
    """The port's dims with -1 for dynamic ones; None when even the rank is dynamic."""
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return None
    return [dim.get_length() if dim.is_static else -1 for dim in shape]


def batch_first(port: Any) -> bool:
    """Whether the port's layout says its first dimension is the batch ('N')."""
    layout = ov.layout_helpers.get_layout(port)
    return bool(ov.layout_helpers.has_batch(layout)) and _batch_index(layout, port) == 0


def _batch_index(layout: Any, port: Any) -> int:
    index = int(ov.layout_helpers.batch_idx(layout))
    if index < 0:  # counted from the end ("...N")
        dims = port_dims(port)
        index += len(dims) if dims is not None else 0
    return index
