"""Model configuration: parsing errors name file and field; defaults and JSON as Triton's."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from naiad.config.model_config import (
    config_to_json_dict,
    normalize,
    parse_config_json,
    parse_config_text,
    resolve_backend,
)
from naiad.errors import ModelConfigError

SIMPLE = """
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy { specific { versions: [1, 3] } }
input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 16 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
"""


def test_parse_error_names_file_and_field() -> None:
    with pytest.raises(ModelConfigError) as info:
        parse_config_text('name: "m"\nmax_batch_sise: 4\n', "/repo/m/config.pbtxt")
    assert "/repo/m/config.pbtxt" in str(info.value)
    assert "max_batch_sise" in str(info.value)
    assert "2:1" in str(info.value)


def test_normalize_fills_triton_defaults() -> None:
    config = parse_config_text(SIMPLE, "x")
    resolve_backend(config, [], "x")
    normalize(config, "x")
    assert config.backend == "onnxruntime"
    assert config.instance_group[0].count == 1
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.optimization.input_pinned_memory.enable


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name: "m" backend: "onnxruntime" max_batch_size: -1 output [{name: "o" data_type: TYPE_FP32 dims: [1]}]',
            "max_batch_size",
        ),
        ('name: "m" backend: "onnxruntime" output [{name: "o" dims: [1]}]', "data_type"),
        (
            'name: "m" backend: "onnxruntime" output [{name: "o" data_type: TYPE_FP32 dims: [0]}]',
            "invalid dims",
        ),
        (
            'name: "m" backend: "onnxruntime" input [{name: "i" data_type: TYPE_FP32 dims: [1]}, {name: "i" data_type: TYPE_FP32 dims: [1]}] output [{name: "o" data_type: TYPE_FP32 dims: [1]}]',
            "duplicate input name",
        ),
        ('name: "m" backend: "onnxruntime"', "at least one 'output'"),
        (
            'name: "m" backend: "onnxruntime" output [{name: "o" data_type: TYPE_FP32 dims: [1]}] instance_group [{kind: KIND_GPU}]',
            "KIND_GPU",
        ),
    ],
)
def test_invalid_configs(text: str, message: str) -> None:
    config = parse_config_text(text, "/r/m/config.pbtxt")
    with pytest.raises(ModelConfigError, match=message) as info:
        normalize(config, "/r/m/config.pbtxt")
    assert "/r/m/config.pbtxt" in str(info.value)


def test_unknown_platform() -> None:
    config = parse_config_text('name: "m" platform: "caffe2"', "x")
    with pytest.raises(ModelConfigError, match="unexpected platform type 'caffe2'"):
        resolve_backend(config, [], "x")


def test_json_rendering_matches_triton() -> None:
    config = parse_config_text(SIMPLE, "x")
    normalize(config, "x")
    rendered = config_to_json_dict(config)
    assert rendered["input"][0]["dims"] == [16]
    assert rendered["input"][0]["data_type"] == "TYPE_INT32"
    assert rendered["version_policy"] == {"specific": {"versions": [1, 3]}}
    assert rendered["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    assert rendered["model_warmup"] == []
    assert rendered["parameters"] == {}
    # The JSON form parses back to the same message (the load API's "config" override).
    import json

    assert parse_config_json(json.dumps(rendered), "json") == config
