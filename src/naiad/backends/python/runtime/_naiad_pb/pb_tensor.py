"""``pb_utils.Tensor``: a named numpy array, as Triton's python backend defines it."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import dlpack
from .errors import TritonModelException
from .types import TYPE_STRING, numpy_dtype, triton_type_of


class Tensor:
    """An input or output tensor: ``Tensor(name, numpy_array)``."""

    __slots__ = ("_array", "_name", "_triton_dtype")

    def __init__(self, name: str, numpy_array: Any, triton_dtype: int | None = None) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Tensor name must be a str, got {type(name).__name__}")
        array = numpy_array if isinstance(numpy_array, np.ndarray) else np.asarray(numpy_array)
        if triton_dtype is not None:
            wanted = numpy_dtype(triton_dtype)
            if wanted is None:
                raise TritonModelException(f"unsupported Triton data type {triton_dtype}")
            if array.dtype != wanted:
                # Triton's meaning: reinterpret the bytes as that type.
                array = array.view(wanted)
        number = triton_type_of(array.dtype)
        if number is None:
            if array.dtype.kind == "U":
                # Beyond Triton (which refuses np.str_): text becomes UTF-8 BYTES elements.
                encoded = np.empty(array.shape, dtype=np.object_)
                encoded.reshape(-1)[:] = [s.encode("utf-8") for s in array.reshape(-1)]
                array = encoded
                number = TYPE_STRING
            else:
                raise TritonModelException(
                    "Tensor dtype used for numpy_array is not support by Python backend. "
                    "Please use np.object_ instead."
                    if array.dtype.kind in "V"
                    else f"numpy data type {array.dtype} is not supported by the python backend"
                )
        if not array.flags.c_contiguous and array.dtype.kind != "O":
            array = np.ascontiguousarray(array)
        self._name = name
        self._array = array
        self._triton_dtype = number

    @classmethod
    def _wrap(cls, name: str, array: np.ndarray, triton_dtype: int) -> Tensor:
        """Fast path for tensors the worker builds from the wire (already checked)."""
        tensor = cls.__new__(cls)
        tensor._name = name
        tensor._array = array
        tensor._triton_dtype = triton_dtype
        return tensor

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array

    def triton_dtype(self) -> int:
        return self._triton_dtype

    def shape(self) -> list[int]:
        return [int(d) for d in self._array.shape]

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        if self._triton_dtype == TYPE_STRING:
            raise TritonModelException("DLPack does not support BYTES tensors")
        return dlpack.to_dlpack(self._array)

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        try:
            array = dlpack.from_dlpack(capsule)
        except (ValueError, TypeError, BufferError, RuntimeError) as exc:
            raise TritonModelException(
                f"unable to import tensor '{name}' by DLPack: {exc}"
            ) from exc
        return Tensor(name, array)

    def __dlpack__(self, stream: Any = None) -> Any:
        return self.to_dlpack()

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU

    def __repr__(self) -> str:
        return f"Tensor(name={self._name!r}, dtype={self._array.dtype}, shape={self.shape()})"
