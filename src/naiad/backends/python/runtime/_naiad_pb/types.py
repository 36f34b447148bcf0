"""Triton data types inside the worker: numbers, names, numpy dtypes, the BYTES codec.

``TRITONSERVER_DataType`` numbers (``TYPE_FP32`` is 11) are what ``Tensor.triton_dtype()``
returns and ``triton_to_numpy_type`` takes; wire names (``"FP32"``) are what the
server and the worker exchange. BF16 maps to ``ml_dtypes.bfloat16`` when that package
is importable (numpy has no bfloat16; Triton offers BF16 only through DLPack).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

try:  # optional in a model's own environment
    import ml_dtypes

    BFLOAT16: Any = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes ships with Naiad
    BFLOAT16 = None

TYPE_INVALID, TYPE_BOOL, TYPE_UINT8, TYPE_UINT16, TYPE_UINT32, TYPE_UINT64 = range(6)
TYPE_INT8, TYPE_INT16, TYPE_INT32, TYPE_INT64 = range(6, 10)
TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_STRING, TYPE_BF16 = range(10, 15)

# Triton number -> (wire name, numpy dtype).
_TYPES: dict[int, tuple[str, Any]] = {
    TYPE_BOOL: ("BOOL", np.dtype(np.bool_)),
    TYPE_UINT8: ("UINT8", np.dtype(np.uint8)),
    TYPE_UINT16: ("UINT16", np.dtype(np.uint16)),
    TYPE_UINT32: ("UINT32", np.dtype(np.uint32)),
    TYPE_UINT64: ("UINT64", np.dtype(np.uint64)),
    TYPE_INT8: ("INT8", np.dtype(np.int8)),
    TYPE_INT16: ("INT16", np.dtype(np.int16)),
    TYPE_INT32: ("INT32", np.dtype(np.int32)),
    TYPE_INT64: ("INT64", np.dtype(np.int64)),
    TYPE_FP16: ("FP16", np.dtype(np.float16)),
    TYPE_FP32: ("FP32", np.dtype(np.float32)),
    TYPE_FP64: ("FP64", np.dtype(np.float64)),
    TYPE_STRING: ("BYTES", np.dtype(np.object_)),
}
if BFLOAT16 is not None:
    _TYPES[TYPE_BF16] = ("BF16", BFLOAT16)

WIRE_TO_TYPE = {wire: number for number, (wire, _) in _TYPES.items()}
TYPE_TO_WIRE = {number: wire for number, (wire, _) in _TYPES.items()}
_NUMPY_TO_TYPE = {dtype: number for number, (_, dtype) in _TYPES.items()}
# Wire name -> numpy dtype of the fixed-size types (BYTES needs decoding).
_WIRE_DTYPES = {wire: dtype for number, (wire, dtype) in _TYPES.items() if number != TYPE_STRING}

# Triton's TRITON_STRING_TO_NUMPY (config names), plus BF16.
TRITON_STRING_TO_NUMPY: dict[str, Any] = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}
if BFLOAT16 is not None:
    TRITON_STRING_TO_NUMPY["TYPE_BF16"] = BFLOAT16.type

_LENGTH = struct.Struct("<I")


def numpy_dtype(triton_type: int) -> Any:
    """The numpy dtype of a Triton type number; None when unknown."""
    entry = _TYPES.get(triton_type)
    return None if entry is None else entry[1].type


def triton_type_of(dtype: Any) -> int | None:
    """The Triton type number of a numpy dtype (or scalar type); None when unsupported."""
    if isinstance(dtype, np.dtype) and dtype.kind != "S":
        return _NUMPY_TO_TYPE.get(dtype)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        return None
    if resolved.kind == "S":
        return TYPE_STRING
    return _NUMPY_TO_TYPE.get(resolved)


def serialize_bytes(array: np.ndarray) -> bytes:
    """Triton's BYTES encoding: each element as a u32 length and its bytes, row-major."""
    parts: list[bytes] = []
    append = parts.append
    pack = _LENGTH.pack
    for item in array.reshape(-1):
        if isinstance(item, bytes):
            data = item
        elif isinstance(item, bytearray | memoryview | np.bytes_):
            data = bytes(item)
        else:
            data = str(item).encode("utf-8")
        append(pack(len(data)))
        append(data)
    return b"".join(parts)


def deserialize_bytes(buffer: bytes | bytearray | memoryview) -> np.ndarray:
    """The inverse of ``serialize_bytes``: a flat object array of ``bytes``."""
    view = memoryview(buffer).cast("B")
    total = len(view)
    items: list[bytes] = []
    offset = 0
    unpack = _LENGTH.unpack_from
    while offset < total:
        if offset + 4 > total:
            raise ValueError("BYTES data ends inside an element length")
        (length,) = unpack(view, offset)
        offset += 4
        if offset + length > total:
            raise ValueError("BYTES element runs past the end of the data")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    out = np.empty(len(items), dtype=np.object_)
    out[:] = items
    return out


def array_from_wire(datatype: str, shape: list[int], data: memoryview) -> np.ndarray:
    """An array of ``shape`` over tensor bytes from the wire (no copy unless BYTES)."""
    dtype = _WIRE_DTYPES.get(datatype)
    if dtype is not None:
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if datatype == "BYTES":
        return deserialize_bytes(data).reshape(shape)
    raise ValueError(f"data type {datatype} is not available in this worker")


def array_to_wire(triton_type: int, array: np.ndarray) -> memoryview | bytes:
    """The raw bytes of ``array`` for the wire; a view when it is already contiguous."""
    if triton_type == TYPE_STRING:
        return serialize_bytes(array)
    try:
        return memoryview(array).cast("B")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pass  # not contiguous, a zero in the shape, or no buffer format (bfloat16)
    flat = np.ascontiguousarray(array).reshape(-1)
    return memoryview(flat.view(np.uint8))  # type: ignore[arg-type]
