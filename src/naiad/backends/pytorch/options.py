"""The PyTorch backend's config ``parameters``, with Triton's keys and defaults.

Triton's PyTorch backend reads these keys (strings "true"/"false" or integers):
``DISABLE_OPTIMIZED_EXECUTION``, ``INFERENCE_MODE`` (default on), ``DISABLE_CUDNN``,
``ENABLE_WEIGHT_SHARING``, ``ENABLE_CACHE_CLEANING`` (GPU only, so no effect here),
``ENABLE_DETERMINISTIC_ALGORITHMS``, ``ENABLE_JIT_EXECUTOR``, ``ENABLE_JIT_PROFILING``,
``ENABLE_TENSOR_FUSER``, ``INTRA_OP_THREAD_COUNT`` and ``INTER_OP_THREAD_COUNT``. The JIT
switches are process-wide in torch; like Triton, each execution sets them again, and
only the ones a config sets explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.parameters import bool_parameter, int_parameter


@dataclass(frozen=True, slots=True)
class TorchOptions:
    optimized_execution: bool = True
    inference_mode: bool = True
    cudnn: bool = True
    weight_sharing: bool = False
    deterministic: bool | None = None
    jit_executor: bool | None = None
    jit_profiling: bool | None = None
    tensor_fuser: bool | None = None
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> TorchOptions:
        def flag(key: str, default: bool) -> bool:
            value = bool_parameter(config, key)
            return default if value is None else value

        return cls(
            optimized_execution=not flag("DISABLE_OPTIMIZED_EXECUTION", False),
            inference_mode=flag("INFERENCE_MODE", True),
            cudnn=not flag("DISABLE_CUDNN", False),
            weight_sharing=flag("ENABLE_WEIGHT_SHARING", False),
            deterministic=bool_parameter(config, "ENABLE_DETERMINISTIC_ALGORITHMS"),
            jit_executor=bool_parameter(config, "ENABLE_JIT_EXECUTOR"),
            jit_profiling=bool_parameter(config, "ENABLE_JIT_PROFILING"),
            tensor_fuser=bool_parameter(config, "ENABLE_TENSOR_FUSER"),
            # Triton: a value <= 0 leaves torch's default (all cores).
            intra_op_threads=_positive(int_parameter(config, "INTRA_OP_THREAD_COUNT", -1)),
            inter_op_threads=_positive(int_parameter(config, "INTER_OP_THREAD_COUNT", -1)),
        )

    def apply_jit(self) -> None:
        """Set torch's JIT switches for a TorchScript execution (cheap; called per run)."""
        torch._C._set_graph_executor_optimize(self.optimized_execution)
        if self.jit_profiling is not None:
            torch._C._jit_set_profiling_mode(self.jit_profiling)
        if self.jit_executor is not None:
            torch._C._jit_set_profiling_executor(self.jit_executor)
        if self.tensor_fuser is not None:
            torch._C._jit_set_texpr_fuser_enabled(self.tensor_fuser)
        if self.deterministic is not None:
            torch.use_deterministic_algorithms(self.deterministic)
        torch.backends.cudnn.enabled = self.cudnn

    @contextlib.contextmanager
    def grad_mode(self) -> Iterator[None]:
        # Triton always disables autograd; INFERENCE_MODE adds torch's inference mode.
        with torch.no_grad(), torch.inference_mode(self.inference_mode):
            yield


def _positive(value: int | None) -> int | None:
    return value if value is not None and value > 0 else None
