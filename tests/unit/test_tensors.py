"""Tensor codecs: every data type, the BYTES length prefix, JSON parsing and size checks."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from naiad.errors import InvalidArgumentError
from naiad.tensors import (
    DataType,
    array_from_bytes,
    array_from_json,
    array_to_json,
    array_to_wire_bytes,
    deserialize_bytes,
    element_count,
    serialize_bytes,
)


def test_all_fourteen_wire_types_map_to_numpy() -> None:
    assert {t.value for t in DataType} == {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
        "BF16",
    }
    assert DataType.BF16.numpy_dtype == np.dtype(ml_dtypes.bfloat16)
    assert DataType.BYTES.config_name == "TYPE_STRING"
    assert DataType.from_config_name("TYPE_STRING") is DataType.BYTES
    assert DataType.from_numpy(np.dtype(np.float16)) is DataType.FP16


@pytest.mark.parametrize("datatype", [t for t in DataType if t is not DataType.BYTES])
def test_fixed_size_round_trip_is_exact(datatype: DataType) -> None:
    values = np.arange(6).reshape(2, 3).astype(datatype.numpy_dtype)
    wire = array_to_wire_bytes(datatype, values)
    assert len(wire) == 6 * datatype.itemsize
    back = array_from_bytes(datatype, [2, 3], bytes(wire))
    assert back.dtype == datatype.numpy_dtype
    np.testing.assert_array_equal(back, values)


def test_bytes_length_prefix_is_little_endian() -> None:
    array = np.array([b"ab", b"c"], dtype=np.object_)
    assert serialize_bytes(array) == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"


def test_bytes_with_nul_and_non_utf8_round_trip() -> None:
    values = [b"\x00\xff\xfe", b"a\x00b", b"", b"\x80"]
    wire = serialize_bytes(np.array(values, dtype=np.object_))
    assert list(deserialize_bytes(wire, 4)) == values
    assert list(array_from_bytes(DataType.BYTES, [2, 2], wire).reshape(-1)) == values


@pytest.mark.parametrize(
    ("wire", "count", "message"),
    [
        (b"\x05\x00\x00\x00ab", 1, "exceeds the buffer"),
        (b"\x01\x00", 1, "truncated"),
        (b"\x01\x00\x00\x00a\x01\x00\x00\x00b", 1, "unexpected number of string elements"),
    ],
)
def test_malformed_bytes_are_rejected(wire: bytes, count: int, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        deserialize_bytes(wire, count)


def test_byte_size_must_match_shape() -> None:
    with pytest.raises(InvalidArgumentError, match="expected 64 bytes but got 60"):
        array_from_bytes(DataType.INT32, [1, 16], b"\x00" * 60)


def test_element_count_overflow_and_negative_dims() -> None:
    assert element_count([2, 3, 4]) == 24
    with pytest.raises(InvalidArgumentError, match="overflows int64"):
        element_count([2**40, 2**40])
    with pytest.raises(InvalidArgumentError, match="dims must be >= 0"):
        element_count([1, -1])


def test_json_nested_or_flat() -> None:
    flat = array_from_json(DataType.INT32, [2, 2], [1, 2, 3, 4])
    nested = array_from_json(DataType.INT32, [2, 2], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(flat, nested)
    assert flat.dtype == np.int32


def test_json_uint64_beyond_int64_is_exact() -> None:
    out = array_from_json(DataType.UINT64, [2], [1, 2**64 - 1])
    assert out.tolist() == [1, 2**64 - 1]


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        (DataType.INT32, [1.5, 2.0], "floating-point"),
        (DataType.INT32, ["a", "b"], "non-numeric"),
        (DataType.BOOL, [1, 0], "integer"),
        (DataType.INT8, [1000, 1], "out of range"),
        (DataType.INT32, [1, 2, 3], "unexpected number of elements 3, expecting 2"),
        (DataType.BYTES, ["a", 1], "BYTES elements must be JSON strings"),
        (DataType.FP32, [[1, 2], [3]], "not a regular array"),
    ],
)
def test_json_type_errors(datatype: DataType, data: list[object], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        array_from_json(datatype, [2], data)


def test_json_output_of_bytes_and_half_types() -> None:
    assert array_to_json(DataType.BYTES, np.array([b"x", b"yz"], dtype=np.object_)) == ["x", "yz"]
    assert array_to_json(DataType.FP16, np.array([0.5], dtype=np.float16)) == [0.5]
    assert array_to_json(DataType.BF16, np.array([2.0], dtype=ml_dtypes.bfloat16)) == [2.0]
    with pytest.raises(InvalidArgumentError, match="not valid UTF-8"):
        array_to_json(DataType.BYTES, np.array([b"\xff"], dtype=np.object_))
