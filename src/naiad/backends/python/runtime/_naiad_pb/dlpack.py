"""DLPack for CPU tensors, BF16 included (numpy's own DLPack support has no bfloat16).

Every dtype but BF16 goes through numpy (``np.from_dlpack``, ``ndarray.__dlpack__``).
For BF16 the capsule is read or written with ctypes against the DLPack ABI: exports
are numpy's uint16 capsule with the dtype code changed to ``kDLBfloat``; imports copy
the data out and release the producer's tensor at once.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .types import BFLOAT16

_KDL_CPU = 1
_KDL_BFLOAT = 4
_CAPSULE_NAME = b"dltensor"
_USED_CAPSULE_NAME = b"used_dltensor"


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _Device),
        ("ndim", ctypes.c_int32),
        ("dtype", _DataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _Managed(ctypes.Structure):
    pass


_Managed._fields_ = [
    ("dl_tensor", _Tensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(_Managed))),
]

_api = ctypes.pythonapi
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _CapsuleHolder:
    """Lets ``np.from_dlpack`` take a bare capsule (it wants an object with __dlpack__)."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, **_kwargs: Any) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (_KDL_CPU, 0)


def to_dlpack(array: np.ndarray) -> Any:
    """A DLPack capsule over ``array`` (no copy)."""
    if BFLOAT16 is not None and array.dtype == BFLOAT16:
        capsule = np.ascontiguousarray(array).view(np.uint16).__dlpack__()
        managed = ctypes.cast(
            _api.PyCapsule_GetPointer(capsule, _CAPSULE_NAME), ctypes.POINTER(_Managed)
        )
        managed.contents.dl_tensor.dtype.code = _KDL_BFLOAT
        return capsule
    return array.__dlpack__()


def from_dlpack(source: Any) -> np.ndarray:
    """A numpy array from a DLPack producer (or capsule) on the CPU."""
    capsule = source.__dlpack__() if hasattr(source, "__dlpack__") else source
    if not _api.PyCapsule_IsValid(capsule, _CAPSULE_NAME):
        raise ValueError("expected a DLPack capsule (or an object with __dlpack__)")
    managed = ctypes.cast(
        _api.PyCapsule_GetPointer(capsule, _CAPSULE_NAME), ctypes.POINTER(_Managed)
    )
    tensor = managed.contents.dl_tensor
    if tensor.device.device_type != _KDL_CPU:
        raise ValueError("only CPU tensors can be imported with DLPack by this server")
    if tensor.dtype.code != _KDL_BFLOAT:
        return np.from_dlpack(_CapsuleHolder(capsule))
    if BFLOAT16 is None or tensor.dtype.bits != 16 or tensor.dtype.lanes != 1:
        raise ValueError("unsupported bfloat16 layout in DLPack tensor")
    shape = tuple(tensor.shape[i] for i in range(tensor.ndim))
    itemsize = 2
    if tensor.strides:
        strides = tuple(tensor.strides[i] * itemsize for i in range(tensor.ndim))
    else:
        strides = tuple(int(s) for s in np.empty(shape, dtype=np.uint16).strides)
    if 0 in shape:
        out = np.zeros(shape, dtype=BFLOAT16)
    else:
        # Bytes from the first element to the end of the last one (strides are >= 0).
        extent = sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) + itemsize
        start = (tensor.data or 0) + tensor.byte_offset
        base = np.frombuffer((ctypes.c_char * extent).from_address(start), dtype=np.uint16)
        view = np.lib.stride_tricks.as_strided(base, shape, strides)
        out = view.copy().view(BFLOAT16)
    # The data is ours now: release the producer's tensor, as a consumer must.
    _api.PyCapsule_SetName(capsule, _USED_CAPSULE_NAME)
    if managed.contents.deleter:
        managed.contents.deleter(managed)
    return out
