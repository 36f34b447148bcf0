"""Typed reads of a model config's ``parameters`` map, shared by the framework backends.

Triton carries every backend parameter as a string (``string_value``) and each backend
converts it when read; these helpers do the conversions once, with errors that name the
model and the key.
"""

from __future__ import annotations

import os

from tritonclient.grpc import model_config_pb2 as mc

from naiad.errors import ModelConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def string_parameter(config: mc.ModelConfig, key: str) -> str | None:
    """The parameter's string value, or ``None`` when the config does not set it."""
    if key in config.parameters:
        return str(config.parameters[key].string_value)
    return None


def int_parameter(config: mc.ModelConfig, key: str, minimum: int = 0) -> int | None:
    """An integer parameter (at least ``minimum``), or ``None`` when not set."""
    raw = string_parameter(config, key)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ModelConfigError(
            f"model '{config.name}': parameter '{key}' must be an integer >= {minimum}, got '{raw}'"
        )
    return value


def float_parameter(config: mc.ModelConfig, key: str) -> float | None:
    """A floating-point parameter, or ``None`` when not set."""
    raw = string_parameter(config, key)
    if raw is None:
        return None
    try:
        return float(raw.strip())
    except ValueError:
        raise ModelConfigError(
            f"model '{config.name}': parameter '{key}' must be a number, got '{raw}'"
        ) from None


def bool_parameter(config: mc.ModelConfig, key: str) -> bool | None:
    """A boolean parameter (true/false, yes/no, on/off, 1/0, any case), or ``None``."""
    raw = string_parameter(config, key)
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ModelConfigError(
        f"model '{config.name}': parameter '{key}' must be true or false, got '{raw}'"
    )


def instance_count(config: mc.ModelConfig) -> int:
    """How many instances the config asks for, over all instance groups."""
    return max(1, sum(group.count for group in config.instance_group))


def cores_per_instance(config: mc.ModelConfig) -> int:
    """The machine's cores split between the model's instances (at least one each)."""
    return max(1, (os.cpu_count() or 1) // instance_count(config))


def first_line(exc: BaseException | str) -> str:
    """The first line of an error's text (framework errors carry long stack dumps)."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return "unknown error" if isinstance(exc, str) else type(exc).__name__
