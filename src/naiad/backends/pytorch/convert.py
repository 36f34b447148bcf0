"""numpy <-> torch tensors for the PyTorch backend, and Triton's data types as torch dtypes.

Inputs become tensors without a copy where torch can share the buffer; BF16 travels as
its 16-bit pattern, since numpy has no bfloat16 torch understands.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import torch
from tritonclient.grpc import model_config_pb2 as mc

CONFIG_TO_TORCH: dict[int, torch.dtype] = {
    mc.TYPE_BOOL: torch.bool,
    mc.TYPE_UINT8: torch.uint8,
    mc.TYPE_UINT16: torch.uint16,
    mc.TYPE_UINT32: torch.uint32,
    mc.TYPE_UINT64: torch.uint64,
    mc.TYPE_INT8: torch.int8,
    mc.TYPE_INT16: torch.int16,
    mc.TYPE_INT32: torch.int32,
    mc.TYPE_INT64: torch.int64,
    mc.TYPE_FP16: torch.float16,
    mc.TYPE_FP32: torch.float32,
    mc.TYPE_FP64: torch.float64,
    mc.TYPE_BF16: torch.bfloat16,
}
TORCH_TO_CONFIG = {dtype: config for config, dtype in CONFIG_TO_TORCH.items()}


def to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.dtype == ml_dtypes.bfloat16:
        return to_tensor(array.view(np.uint16)).view(torch.bfloat16)
    if not array.flags.writeable:
        # HTTP binary inputs are read-only views of the request body; torch wants a
        # writable buffer (a model may write into its input), so copy these.
        array = array.copy()
    return torch.from_numpy(array)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    tensor = tensor.contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()
