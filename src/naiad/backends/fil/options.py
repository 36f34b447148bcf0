"""The FIL backend's config ``parameters``, with the keys of Triton's FIL backend.

``model_type`` (``xgboost``, ``xgboost_json``, ``xgboost_ubj``, ``lightgbm``,
``treelite_checkpoint``) picks the loader and the default file name;
``output_class`` (newer FIL releases call it ``is_classifier``), ``predict_proba`` and
``threshold`` shape the output; ``xgboost_allow_unknown_field`` relaxes the XGBoost
JSON reader. ``cpu_nthread`` bounds the threads of one prediction. Triton's GPU tuning
keys (``algo``, ``storage_type``, ``threads_per_tree``, ``blocks_per_sm``,
``transfer_threshold``, ``layout``, ``chunk_size``, ``use_experimental_optimizations``)
change speed only, never results, and are accepted and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from naiad.backends.parameters import (
    bool_parameter,
    float_parameter,
    int_parameter,
    string_parameter,
)
from naiad.errors import ModelConfigError

# Triton FIL's default file name for each model_type.
DEFAULT_FILENAMES = {
    "xgboost": "xgboost.model",
    "xgboost_json": "xgboost.json",
    "xgboost_ubj": "xgboost.ubj",
    "lightgbm": "model.txt",
    "treelite_checkpoint": "checkpoint.tl",
}


@dataclass(frozen=True, slots=True)
class FilOptions:
    model_type: str
    output_class: bool
    predict_proba: bool
    threshold: float
    allow_unknown_field: bool
    nthread: int | None

    @property
    def default_filename(self) -> str:
        return DEFAULT_FILENAMES[self.model_type]

    @classmethod
    def from_config(cls, config: mc.ModelConfig) -> FilOptions:
        model_type = (string_parameter(config, "model_type") or "xgboost").strip()
        if model_type not in DEFAULT_FILENAMES:
            raise ModelConfigError(
                f"model '{config.name}': unknown FIL model_type '{model_type}'; expected one "
                f"of {', '.join(DEFAULT_FILENAMES)}"
            )
        output_class = bool_parameter(config, "output_class")
        if output_class is None:
            output_class = bool_parameter(config, "is_classifier")
        threshold = float_parameter(config, "threshold")
        nthread = int_parameter(config, "cpu_nthread", minimum=-1)
        return cls(
            model_type=model_type,
            output_class=bool(output_class),
            predict_proba=bool(bool_parameter(config, "predict_proba")),
            threshold=0.5 if threshold is None else threshold,
            allow_unknown_field=bool(bool_parameter(config, "xgboost_allow_unknown_field")),
            nthread=nthread if nthread is not None and nthread > 0 else None,
        )
