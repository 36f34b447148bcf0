"""Model warmup (``model_warmup``): sample requests every instance runs before READY.

Inputs are ``zero_data``, ``random_data`` or ``input_data_file`` (raw bytes, or
length-prefixed for BYTES, read from ``<model>/warmup/``, and only from there).
A failing sample fails the load with its name in the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.base import ExecutionTimes, ModelInstance
from naiad.errors import InternalError, InvalidArgumentError, ModelConfigError, NaiadError
from naiad.inference import InferenceRequest, InferInput
from naiad.tensors import DataType, array_from_bytes, element_count

WARMUP_DIR = "warmup"


def _sample_input(
    name: str, spec: mc.ModelWarmup.Input, batch_size: int, max_batch_size: int, model_dir: Path
) -> InferInput:
    datatype = DataType.from_config_name(mc.DataType.Name(spec.data_type))
    shape = tuple(([batch_size] if max_batch_size > 0 else []) + list(spec.dims))
    count = element_count(shape)
    kind = spec.WhichOneof("input_data_type")
    if kind == "input_data_file":
        root = (model_dir / WARMUP_DIR).resolve()
        path = (root / spec.input_data_file).resolve()
        if not str(path).startswith(str(root)) or path == root:
            raise ModelConfigError(
                f"warmup input '{name}': input_data_file must stay in {WARMUP_DIR}/"
            )
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ModelConfigError(
                f"warmup input '{name}': cannot read its data file: {exc.strerror}"
            ) from None
        if datatype is not DataType.BYTES:
            # One sample's bytes are repeated across the batch, as Triton does.
            per_sample = element_count(spec.dims) * datatype.itemsize
            raw = raw[:per_sample] * max(1, batch_size if max_batch_size > 0 else 1)
        data = array_from_bytes(datatype, shape, raw)
    elif datatype is DataType.BYTES:
        data = np.empty(count, dtype=np.object_)
        data[:] = [b"0" * 8 if kind == "random_data" else b""] * count
        data = data.reshape(shape)
    elif kind == "random_data":
        rng = np.random.default_rng(0)
        data = rng.integers(0, 2, size=shape).astype(datatype.numpy_dtype)
    else:
        data = np.zeros(shape, dtype=datatype.numpy_dtype)
    return InferInput(name, datatype, shape, data)


async def run_warmup(
    config: mc.ModelConfig, instances: list[ModelInstance], model_dir: Path
) -> None:
    """Run every warmup sample ``count`` times on every instance; raise on the first failure."""
    outputs = [output.name for output in config.output]
    for sample in config.model_warmup:
        batch_size = max(1, sample.batch_size)
        try:
            inputs = [
                _sample_input(name, spec, batch_size, config.max_batch_size, model_dir)
                for name, spec in sample.inputs.items()
            ]
        except InvalidArgumentError as exc:
            raise ModelConfigError(f"warmup sample '{sample.name}': {exc}") from None
        request = InferenceRequest(
            model_name=config.name, id=f"warmup:{sample.name}", inputs=inputs
        )
        for instance in instances:
            for _ in range(max(1, sample.count)):
                try:
                    results = await instance.execute([request], outputs, ExecutionTimes())
                except NaiadError as exc:
                    raise InternalError(f"warmup sample '{sample.name}' failed: {exc}") from None
                except Exception as exc:
                    raise InternalError(
                        f"warmup sample '{sample.name}' failed: {type(exc).__name__}: {exc}"
                    ) from None
                if isinstance(results[0], NaiadError):
                    raise InternalError(f"warmup sample '{sample.name}' failed: {results[0]}")
