"""Trace settings as Triton has them: ``--trace-config`` at start, the trace extension later.

Global settings come from the command line; a model may override any of ``trace_level``,
``trace_rate``, ``trace_count`` and ``log_frequency`` over the network, and a field it
does not override follows the global value. ``trace_file`` (and the mode) are fixed at
start: the network may read them, never change them (Triton's rule, so that a client
cannot make the server write files where it likes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from naiad.errors import InvalidArgumentError, UnsupportedError

TIMESTAMPS = "TIMESTAMPS"
TENSORS = "TENSORS"
MODES = ("triton", "opentelemetry")
_UINT32_MAX = 2**32 - 1
_INT32_MAX = 2**31 - 1
DEFAULT_OTEL_URL = "http://localhost:4318/v1/traces"


@dataclass(frozen=True, slots=True)
class TraceSetting:
    """One effective setting: levels (empty = OFF), sampling rate, count, file logging."""

    level: frozenset[str] = frozenset()
    rate: int = 1000
    count: int = -1  # traces left to collect; -1: no limit
    log_frequency: int = 0
    file: str = ""
    mode: str = "triton"

    @property
    def enabled(self) -> bool:
        return bool(self.level) and self.count != 0

    def level_names(self) -> list[str]:
        return [name for name in (TIMESTAMPS, TENSORS) if name in self.level] or ["OFF"]


@dataclass(slots=True)
class TraceConfig:
    """What ``--trace-config`` (and the deprecated ``--trace-*`` flags) set at start."""

    setting: TraceSetting = field(default_factory=TraceSetting)
    # OpenTelemetry options: url, resource attributes, batch span processor sizes.
    otel_url: str = DEFAULT_OTEL_URL
    otel_resource: dict[str, str] = field(default_factory=dict)
    otel_options: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_entries(cls, entries: Sequence[str]) -> TraceConfig:
        """Parse ``[triton|opentelemetry,]KEY=VALUE`` entries; ValueError says what is wrong."""
        config = cls()
        values: dict[str, object] = {}
        levels: set[str] = set()
        for entry in entries:
            mode, key, value = _split_entry(entry)
            if mode in ("", "global") and key == "level":
                upper = value.upper()
                if upper == "OFF":
                    levels.clear()
                elif upper in (TIMESTAMPS, TENSORS):
                    levels.add(upper)
                else:
                    raise ValueError(f"unknown trace level '{value}'")
            elif mode in ("", "global") and key in ("rate", "count"):
                values[key] = _parse_int(key, value, -1 if key == "count" else 0)
            elif mode in ("", "global") and key == "mode":
                if value not in MODES:
                    raise ValueError(f"unknown trace mode '{value}' (triton or opentelemetry)")
                values["mode"] = value
            elif mode in ("", "triton") and key == "file":
                values["file"] = value
            elif mode in ("", "triton") and key == "log-frequency":
                values["log_frequency"] = _parse_int(key, value, 0)
            elif mode == "opentelemetry" and key == "url":
                config.otel_url = value
            elif mode == "opentelemetry" and key == "resource":
                name, sep, attribute = value.partition("=")
                if not sep or not name:
                    raise ValueError(f"expected resource=KEY=VALUE, got '{value}'")
                config.otel_resource[name] = attribute
            elif mode == "opentelemetry" and key.startswith("bsp_"):
                config.otel_options[key] = _parse_int(key, value, 0)
            else:
                where = f"{mode}," if mode else ""
                raise ValueError(f"unknown trace setting '{where}{key}'")
        config.setting = TraceSetting(
            level=frozenset(levels),
            rate=int(values.get("rate", 1000)),  # type: ignore[call-overload]
            count=int(values.get("count", -1)),  # type: ignore[call-overload]
            log_frequency=int(values.get("log_frequency", 0)),  # type: ignore[call-overload]
            file=str(values.get("file", "")),
            mode=str(values.get("mode", "triton")),
        )
        return config


def _split_entry(entry: str) -> tuple[str, str, str]:
    head, sep, rest = entry.partition(",")
    if sep and "=" not in head:
        mode = head.strip().lower()
        if mode not in (*MODES, "global"):
            raise ValueError(f"unknown trace mode '{head}' in '{entry}'")
    else:
        mode, rest = "", entry
    key, sep, value = rest.partition("=")
    if not sep:
        raise ValueError(f"expected [MODE,]KEY=VALUE, got '{entry}'")
    return mode, key.strip(), value.strip()


def _parse_int(key: str, value: str, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"trace setting '{key}' must be an integer, got '{value}'") from None
    if number < minimum:
        raise ValueError(f"trace setting '{key}' must be >= {minimum}, got {number}")
    return number


# -- updates over the network (HTTP JSON and gRPC both normalise to this) ---------------

# Setting name -> new values; None clears the setting (a model falls back to the global
# value, the global setting goes back to its start-up value).
SettingUpdate = Mapping[str, Sequence[str] | None]

_UPDATABLE = ("trace_level", "trace_rate", "trace_count", "log_frequency")


@dataclass(frozen=True, slots=True)
class Overrides:
    """A model's own values; None means "as the global setting"."""

    level: frozenset[str] | None = None
    rate: int | None = None
    count: int | None = None
    log_frequency: int | None = None

    def apply(self, base: TraceSetting) -> TraceSetting:
        return replace(
            base,
            level=base.level if self.level is None else self.level,
            rate=base.rate if self.rate is None else self.rate,
            count=base.count if self.count is None else self.count,
            log_frequency=base.log_frequency if self.log_frequency is None else self.log_frequency,
        )

    def is_empty(self) -> bool:
        return self == Overrides()


def parse_update(update: SettingUpdate, current: Overrides) -> Overrides:
    """Apply a network update to ``current``; Triton's errors for what it refuses."""
    if "trace_file" in update:
        raise UnsupportedError("trace file location can not be updated through network protocol")
    result = current
    for name, values in update.items():
        if name not in _UPDATABLE:
            continue  # Triton ignores settings it does not know
        if values is None:
            cleared: dict[str, Any] = {_FIELD[name]: None}
            result = replace(result, **cleared)
            continue
        if name == "trace_level":
            result = replace(result, level=_parse_levels(values))
            continue
        if len(values) != 1:
            raise InvalidArgumentError(f"expect only 1 value for '{name}'")
        text = values[0]
        if name == "trace_count":
            number = _network_int(name, text, -1, _INT32_MAX)
            if number < -1:
                raise InvalidArgumentError(
                    f"Unable to parse '{name}'. Expecting value >= -1, got: {text}"
                )
        else:
            number = _network_int(name, text, 0, _UINT32_MAX)
        changes: dict[str, Any] = {_FIELD[name]: number}
        result = replace(result, **changes)
    return result


_FIELD = {
    "trace_level": "level",
    "trace_rate": "rate",
    "trace_count": "count",
    "log_frequency": "log_frequency",
}


def _parse_levels(values: Sequence[str]) -> frozenset[str]:
    levels: set[str] = set()
    for value in values:
        if value == "OFF":
            if len(values) != 1:
                raise InvalidArgumentError("Expect only one trace level 'OFF' is specified")
        elif value in (TIMESTAMPS, TENSORS):
            levels.add(value)
        else:
            raise InvalidArgumentError(f"Unable to parse 'trace_level', got: {value}")
    return frozenset(levels)


def _network_int(name: str, text: str, low: int, high: int) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise InvalidArgumentError(f"Unable to parse '{name}', got: {text}") from None
    if number > high or (number < low and low >= 0):
        raise InvalidArgumentError(
            f"Unable to parse '{name}', value is out of range [ {low}, {high} ], got: {text}"
        )
    return number


def setting_values(setting: TraceSetting, config: TraceConfig) -> dict[str, list[str]]:
    """The settings a GET reports, each as a list of strings (gRPC's shape)."""
    values: dict[str, list[str]] = {
        "trace_level": setting.level_names(),
        "trace_rate": [str(setting.rate)],
        "trace_count": [str(setting.count)],
    }
    if setting.mode == "triton":
        values["log_frequency"] = [str(setting.log_frequency)]
        values["trace_file"] = [setting.file]
    values["trace_mode"] = [setting.mode]
    if setting.mode == "opentelemetry":
        values["url"] = [config.otel_url]
        if config.otel_resource:
            values["resource"] = [f"{k}={v}" for k, v in sorted(config.otel_resource.items())]
        for key, number in sorted(config.otel_options.items()):
            values[key] = [str(number)]
    return values
