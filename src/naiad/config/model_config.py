"""Parse and normalize a model's ``config.pbtxt`` into Triton's ``ModelConfig`` message.

The message type is Triton's own (``tritonclient.grpc.model_config_pb2``), parsed with
``google.protobuf.text_format``, so every field Triton knows is accepted by name. After
a backend's auto-complete, :func:`normalize` fills in Triton's defaults and validates;
every error names the file (or model) and the field.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import ModelConfigError

ModelConfig = mc.ModelConfig
DEFAULT_CONFIG_NAME = "config.pbtxt"

# Triton's platform names and the backend each implies (core/src/constants.h).
PLATFORM_TO_BACKEND = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "torch_aoti": "pytorch",
    "tensorflow_graphdef": "tensorflow",
    "tensorflow_savedmodel": "tensorflow",
    "tensorrt_plan": "tensorrt",
    "openvino": "openvino",
}
BACKEND_TO_PLATFORM = {
    "onnxruntime": "onnxruntime_onnx",
    "pytorch": "pytorch_libtorch",
    "tensorrt": "tensorrt_plan",
}
# When a config names neither platform nor backend, Triton guesses from the files present.
DEFAULT_FILE_TO_BACKEND = {
    "model.onnx": "onnxruntime",
    "model.plan": "tensorrt",
    "model.pt": "pytorch",
    "model.pt2": "pytorch",
    "model.savedmodel": "tensorflow",
    "model.graphdef": "tensorflow",
    "model.py": "python",
    "model.xml": "openvino",
}


def parse_config_text(text: str, source: str) -> mc.ModelConfig:
    """Parse protobuf text format; the error names ``source`` and the offending field."""
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise ModelConfigError(f"failed to parse model configuration {source}: {exc}") from None
    return config


def parse_config_json(text: str | bytes, source: str) -> mc.ModelConfig:
    """Parse a ``ModelConfig`` given as JSON (the repository API's ``config`` override)."""
    config = mc.ModelConfig()
    try:
        json_format.Parse(text, config)
    except json_format.ParseError as exc:
        raise ModelConfigError(f"failed to parse model configuration {source}: {exc}") from None
    return config


def read_config(model_dir: Path, config_name: str = DEFAULT_CONFIG_NAME) -> mc.ModelConfig | None:
    """Read ``<model_dir>/config.pbtxt``; ``None`` when the file does not exist."""
    path = model_dir / config_name
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"failed to read model configuration {path}: {exc}") from None
    return parse_config_text(text, str(path))


def resolve_backend(config: mc.ModelConfig, version_dirs: list[Path], source: str) -> None:
    """Fill ``backend`` from ``platform`` or from the model files, as Triton does."""
    if config.platform == "ensemble":
        return
    if not config.backend and config.platform:
        backend = PLATFORM_TO_BACKEND.get(config.platform)
        if backend is None:
            raise ModelConfigError(
                f"unexpected platform type '{config.platform}' for model '{config.name}' "
                f"({source}: field 'platform')"
            )
        config.backend = backend
    if not config.backend:
        candidates = [config.default_model_filename] if config.default_model_filename else []
        candidates += list(DEFAULT_FILE_TO_BACKEND)
        for version_dir in version_dirs:
            for filename in candidates:
                if (version_dir / filename).exists() and filename in DEFAULT_FILE_TO_BACKEND:
                    config.backend = DEFAULT_FILE_TO_BACKEND[filename]
                    break
            if config.backend:
                break
    if not config.backend:
        raise ModelConfigError(
            f"unexpected platform type '' for model '{config.name}': set 'backend' or "
            f"'platform' in {source}"
        )
    if not config.platform and config.backend in BACKEND_TO_PLATFORM:
        config.platform = BACKEND_TO_PLATFORM[config.backend]


def normalize(config: mc.ModelConfig, source: str) -> None:
    """Validate ``config`` and fill Triton's defaults in place."""
    name = config.name
    if config.max_batch_size < 0:
        raise ModelConfigError(f"{source}: field 'max_batch_size' must be >= 0 for model '{name}'")
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    elif config.version_policy.HasField("latest") and config.version_policy.latest.num_versions < 1:
        raise ModelConfigError(
            f"{source}: field 'version_policy.latest.num_versions' must be >= 1 for model '{name}'"
        )
    _check_tensors(config.input, "input", config, source)
    _check_tensors(config.output, "output", config, source)
    if not config.output and config.platform != "ensemble":
        raise ModelConfigError(f"{source}: model '{name}' must specify at least one 'output'")
    # Ensembles run no instances of their own (their steps have them).
    if not config.instance_group and config.platform != "ensemble":
        group = config.instance_group.add()
        group.name = name
        group.kind = mc.ModelInstanceGroup.KIND_CPU
        group.count = 1
    for index, group in enumerate(config.instance_group):
        if not group.name:
            group.name = f"{name}_{index}"
        if group.kind == mc.ModelInstanceGroup.KIND_AUTO:
            group.kind = mc.ModelInstanceGroup.KIND_CPU
        if group.count == 0 and not group.HasField("rate_limiter"):
            group.count = 1
        if group.count < 1:
            raise ModelConfigError(
                f"{source}: field 'instance_group[{index}].count' must be >= 1 for model '{name}'"
            )
        if group.kind == mc.ModelInstanceGroup.KIND_GPU:
            raise ModelConfigError(
                f"{source}: instance_group[{index}] of model '{name}' has kind KIND_GPU, "
                "but no GPU is available to this server; use KIND_CPU"
            )
    if not config.HasField("optimization"):
        config.optimization.input_pinned_memory.enable = True
        config.optimization.output_pinned_memory.enable = True


def _check_tensors(tensors: Iterable[Any], kind: str, config: mc.ModelConfig, source: str) -> None:
    seen: set[str] = set()
    for index, tensor in enumerate(tensors):
        where = f"{source}: {kind}[{index}]"
        if not tensor.name:
            raise ModelConfigError(f"{where} of model '{config.name}' must specify 'name'")
        if tensor.name in seen:
            raise ModelConfigError(
                f"{where}: duplicate {kind} name '{tensor.name}' for model '{config.name}'"
            )
        seen.add(tensor.name)
        if tensor.data_type == mc.TYPE_INVALID:
            raise ModelConfigError(
                f"{where}: model {kind} '{tensor.name}' must specify 'data_type'"
            )
        for dim in tensor.dims:
            if dim == 0 or dim < -1:
                raise ModelConfigError(
                    f"{where}: model {kind} '{tensor.name}' has invalid dims "
                    f"{list(tensor.dims)}: each dim must be -1 or > 0"
                )
        if tensor.HasField("reshape"):
            from naiad.tensors import element_count  # local: keeps import order simple

            fixed_dims = [d for d in tensor.dims if d != -1]
            fixed_reshape = [d for d in tensor.reshape.shape if d != -1]
            if -1 not in tensor.dims and element_count(fixed_dims) != element_count(fixed_reshape):
                raise ModelConfigError(
                    f"{where}: model {kind} '{tensor.name}' has a 'reshape' whose element "
                    "count differs from 'dims'"
                )


def config_to_json_dict(config: mc.ModelConfig) -> dict[str, object]:
    """Render a config as Triton does over HTTP.

    Snake_case names, every scalar and repeated field printed (defaults included),
    enums as strings, and 64-bit integers as JSON numbers rather than strings.
    """
    return message_to_json_dict(config)


def message_to_json_dict(message: Message) -> dict[str, object]:
    """Any of Triton's protobuf messages as Triton's HTTP frontend writes it (see above)."""
    rendered = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _int64_as_numbers(message.DESCRIPTOR, rendered)


_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _int64_as_numbers(descriptor: object, value: dict[str, object]) -> dict[str, object]:
    fields = descriptor.fields_by_name  # type: ignore[attr-defined]
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            continue
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.message_type is not None and isinstance(item, dict):
                    for map_key, map_value in item.items():
                        item[map_key] = _int64_as_numbers(value_field.message_type, map_value)
                elif value_field.type in _INT64_TYPES and isinstance(item, dict):
                    for map_key, map_value in item.items():
                        item[map_key] = int(map_value)
            elif isinstance(item, list):
                value[key] = [_int64_as_numbers(field.message_type, v) for v in item]
            elif isinstance(item, dict):
                value[key] = _int64_as_numbers(field.message_type, item)
        elif field.type in _INT64_TYPES:
            value[key] = [int(v) for v in item] if isinstance(item, list) else int(item)  # type: ignore[call-overload]
    return value
