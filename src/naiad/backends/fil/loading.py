"""Read a forest file with Treelite's own readers (never pickle), per FIL ``model_type``.

``xgboost`` is XGBoost's "binary" file: XGBoost 2.1+ writes UBJSON under any name that
does not end in ``.json``, and older releases wrote the legacy binary format; the first
byte tells them apart (UBJSON is an object, ``{``).
"""

from __future__ import annotations

import re
from pathlib import Path

import treelite

from naiad.backends.fil.options import FilOptions
from naiad.backends.parameters import first_line
from naiad.errors import ModelLoadError

_TREELITE_PREFIX = re.compile(r"^\[[^\]]*\]\s+\S+:\d+:\s*")


def load_forest(path: Path, options: FilOptions, model_name: str) -> treelite.Model:
    if not path.is_file():
        raise ModelLoadError(f"unable to find '{path}' for model '{model_name}'")
    try:
        return _read(path, options)
    except (treelite.TreeliteError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"failed to load model '{model_name}' as FIL model_type '{options.model_type}': "
            f"{_reason(exc)} ({path})"
        ) from None


def _read(path: Path, options: FilOptions) -> treelite.Model:
    frontend = treelite.frontend
    model_type = options.model_type
    if model_type == "xgboost":
        with path.open("rb") as file:
            ubjson = file.read(1) == b"{"
        if not ubjson:
            return frontend.load_xgboost_model_legacy_binary(str(path))
        model_type = "xgboost_ubj"
    if model_type in ("xgboost_json", "xgboost_ubj"):
        return frontend.load_xgboost_model(
            str(path),
            format_choice="json" if model_type == "xgboost_json" else "ubjson",
            allow_unknown_field=options.allow_unknown_field,
        )
    if model_type == "lightgbm":
        return frontend.load_lightgbm_model(str(path))
    return treelite.Model.deserialize(str(path))


def _reason(exc: BaseException) -> str:
    # Treelite prefixes its messages with "[time] file.cc:line: "; keep what follows.
    return _TREELITE_PREFIX.sub("", first_line(exc))
