"""OpenVINO compile properties from config ``parameters`` (Triton's OpenVINO backend keys).

Unset keys leave OpenVINO's defaults, except that inference threads are split between
a model's instances on small machines, as the ONNX Runtime backend does.
"""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.parameters import (
    cores_per_instance,
    int_parameter,
    string_parameter,
)
from naiad.errors import ModelConfigError

_HINTS = {"LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"}


def _yes(config: mc.ModelConfig, key: str) -> bool:
    # Triton's OpenVINO backend takes "YES" (any case) as true and anything else as false.
    return (string_parameter(config, key) or "").strip().lower() == "yes"


def reshape_io_layers(config: mc.ModelConfig) -> bool:
    return _yes(config, "RESHAPE_IO_LAYERS")


def compile_properties(config: mc.ModelConfig) -> dict[str, str]:
    properties: dict[str, str] = {}
    hint = string_parameter(config, "PERFORMANCE_HINT")
    if hint is not None:
        if hint.strip().upper() not in _HINTS:
            raise ModelConfigError(
                f"model '{config.name}': PERFORMANCE_HINT must be LATENCY or THROUGHPUT, "
                f"got '{hint}'"
            )
        properties["PERFORMANCE_HINT"] = hint.strip().upper()
    threads = int_parameter(config, "INFERENCE_NUM_THREADS")
    properties["INFERENCE_NUM_THREADS"] = str(threads or cores_per_instance(config))
    compile_threads = int_parameter(config, "COMPILATION_NUM_THREADS")
    if compile_threads:
        properties["COMPILATION_NUM_THREADS"] = str(compile_threads)
    streams = string_parameter(config, "NUM_STREAMS")
    if streams is not None:
        value = streams.strip().upper()
        if value not in ("AUTO", "NUMA") and not value.isdigit():
            raise ModelConfigError(
                f"model '{config.name}': NUM_STREAMS must be a number, AUTO or NUMA, "
                f"got '{streams}'"
            )
        properties["NUM_STREAMS"] = value
    if _yes(config, "HINT_BF16"):
        properties["INFERENCE_PRECISION_HINT"] = "bf16"
    for key in ("SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING", "CPU_EXTENSION_PATH"):
        if string_parameter(config, key) is not None and (
            key == "CPU_EXTENSION_PATH" or _yes(config, key)
        ):
            raise ModelConfigError(
                f"model '{config.name}': parameter '{key}' is not supported by this server's "
                "OpenVINO backend"
            )
    return properties
