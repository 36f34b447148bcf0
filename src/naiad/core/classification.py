"""The classification extension: replace an output by its top-k ``value:index[:label]`` strings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from naiad.errors import InvalidArgumentError, ModelConfigError
from naiad.tensors import DataType

_UNSUPPORTED = {DataType.BYTES, DataType.FP16, DataType.BF16, DataType.BOOL}


def read_labels(path: Path) -> list[str]:
    """One label per line, as Triton's ``label_filename`` files are written."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelConfigError(f"unable to read label file {path}: {exc}") from None


def _format_value(value: object, floating: bool) -> str:
    # Triton formats with std::to_string: "%f" for floating point, plain for integers.
    return f"{value:f}" if floating else str(value)


def classify(
    array: np.ndarray, datatype: DataType, k: int, batching: bool, labels: list[str]
) -> np.ndarray:
    """Top-``k`` classes per batch row (or over the whole tensor when not batching)."""
    if datatype in _UNSUPPORTED:
        raise InvalidArgumentError(
            f"class result not available for output due to unsupported type '{datatype.value}'"
        )
    rows = (
        array.reshape(array.shape[0], -1) if batching and array.ndim > 0 else array.reshape(1, -1)
    )
    floating = datatype in (DataType.FP32, DataType.FP64)
    count = min(k, rows.shape[1])
    out = np.empty((rows.shape[0], count), dtype=np.object_)
    for r, row in enumerate(rows):
        order = np.argsort(-row.astype(np.float64), kind="stable")[:count]
        for c, index in enumerate(order):
            text = f"{_format_value(row[index].item(), floating)}:{int(index)}"
            if index < len(labels):
                text += f":{labels[index]}"
            out[r, c] = text.encode("utf-8")
    return out if batching and array.ndim > 0 else out.reshape(count)
