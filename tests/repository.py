"""Test model repositories written at test time (ONNX models built with ``onnx.helper``)."""

from __future__ import annotations

from pathlib import Path

from naiad.examples import onnx_models


def write_model(
    repository: Path,
    name: str,
    config: str | None,
    model: bytes | None,
    version: int = 1,
    filename: str = "model.onnx",
) -> Path:
    model_dir = repository / name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    if config is not None:
        (model_dir / "config.pbtxt").write_text(config)
    if model is not None:
        (model_dir / str(version) / filename).write_bytes(model)
    return model_dir


def simple_config(name: str, datatype: str, dims: int = 16, max_batch_size: int = 8) -> str:
    config_type = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
    return f"""
name: "{name}"
platform: "onnxruntime_onnx"
max_batch_size: {max_batch_size}
input [
  {{ name: "INPUT0" data_type: {config_type} dims: [ {dims} ] }},
  {{ name: "INPUT1" data_type: {config_type} dims: [ {dims} ] }}
]
output [
  {{ name: "OUTPUT0" data_type: {config_type} dims: [ {dims} ] }},
  {{ name: "OUTPUT1" data_type: {config_type} dims: [ {dims} ] }}
]
"""


IDENTITY_TYPES = ["FP16", "BF16", "BOOL", "INT8", "UINT64", "FP64", "FP32", "INT32", "BYTES"]


def identity_config(name: str, datatype: str) -> str:
    config_type = "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"
    return f"""
name: "{name}"
backend: "onnxruntime"
max_batch_size: 8
input [ {{ name: "INPUT0" data_type: {config_type} dims: [ -1 ] }} ]
output [ {{ name: "OUTPUT0" data_type: {config_type} dims: [ -1 ] }} ]
"""


def build_standard_repository(root: Path) -> Path:
    """The repository most e2e tests share: ``simple``, ``simple_string``, identities, MLP."""
    root.mkdir(parents=True, exist_ok=True)
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    write_model(
        root,
        "simple_string",
        simple_config("simple_string", "BYTES"),
        onnx_models.add_sub("BYTES"),
    )
    for datatype in IDENTITY_TYPES:
        name = f"identity_{datatype.lower()}"
        write_model(
            root, name, identity_config(name, datatype), onnx_models.identity(datatype, [-1])
        )
    # No config.pbtxt: inputs, outputs and max_batch_size come from auto-complete.
    write_model(root, "mlp_autocomplete", None, onnx_models.mlp((8, 16, 4)))
    classifier = write_model(
        root,
        "classifier",
        """
name: "classifier"
backend: "onnxruntime"
max_batch_size: 4
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 5 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 5 ] label_filename: "labels.txt" } ]
""",
        onnx_models.identity("FP32", [5]),
    )
    (classifier / "labels.txt").write_text("cat\ndog\nbird\nfish\nfrog\n")
    # Non-batching model: full shapes are the config dims.
    write_model(
        root,
        "simple_nobatch",
        simple_config("simple_nobatch", "INT32", max_batch_size=0),
        onnx_models.add_sub("INT32", batch=False),
    )
    return root
