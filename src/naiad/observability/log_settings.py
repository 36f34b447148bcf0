"""Log settings that can change while the server runs (Triton's logging extension).

``log_info``, ``log_warning`` and ``log_error`` switch each severity on or off,
``log_verbose_level`` enables verbose messages up to that level (a message logged at
``logging.DEBUG`` is level 1, ``DEBUG - 1`` is level 2, ...), ``log_format`` picks
Triton's ``default`` or ``ISO8601`` line, or ``json`` (one JSON object per line, beyond
Triton). ``log_file`` is set only on the command line: over the network it is read-only.
Every format escapes line breaks, so no text from a request can forge a log line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import orjson

from naiad.errors import InvalidArgumentError, UnsupportedError
from naiad.logs import TritonFormatter, escape_message, level_letter

FORMATS = ("default", "ISO8601", "json")
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class LogSettings:
    info: bool = True
    warning: bool = True
    error: bool = True
    verbose_level: int = 0
    format: str = "default"
    file: str = ""


def verbose_level_of(levelno: int) -> int:
    """The verbose level of a record below INFO: DEBUG is 1, DEBUG - 1 is 2, ..."""
    return logging.DEBUG + 1 - levelno


class Iso8601Formatter(logging.Formatter):
    """Triton's ISO8601 line: ``2024-05-01T12:00:00Z I 1234 file.py:42] message``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        return (
            f"{stamp} {level_letter(record.levelno)} {record.process} "
            f"{record.filename}:{record.lineno}] {escape_message(message)}"
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line (JSON escapes every control character in strings)."""

    def format(self, record: logging.LogRecord) -> str:
        created = record.created
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
            + f".{int((created % 1) * 1_000_000):06d}Z",
            "level": record.levelname if record.levelno >= logging.INFO else "VERBOSE",
            "pid": record.process,
            "file": record.filename,
            "line": record.lineno,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.levelno < logging.INFO:
            entry["verbose_level"] = verbose_level_of(record.levelno)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        line = orjson.dumps(entry).decode()
        # Valid JSON may hold these raw; some line readers split on them.
        return (
            line.replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
            .replace("\x85", "\\u0085")
        )


def _formatter(name: str) -> logging.Formatter:
    if name == "ISO8601":
        return Iso8601Formatter()
    if name == "json":
        return JsonFormatter()
    return TritonFormatter()


class _SeverityFilter(logging.Filter):
    def __init__(self, control: LogControl) -> None:
        super().__init__()
        self._control = control

    def filter(self, record: logging.LogRecord) -> bool:
        settings = self._control.settings
        level = record.levelno
        if level >= logging.ERROR:
            return settings.error
        if level >= logging.WARNING:
            return settings.warning
        if level >= logging.INFO:
            return settings.info
        return verbose_level_of(level) <= settings.verbose_level


class LogControl:
    """Owns the handler of the ``naiad`` logger and applies settings, at start or live."""

    def __init__(self, settings: LogSettings, logger_name: str = "naiad") -> None:
        self.settings = settings
        self._logger = logging.getLogger(logger_name)
        if settings.file:
            handler: logging.Handler = logging.FileHandler(settings.file, encoding="utf-8")
        else:
            handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_SeverityFilter(self))
        self._handler = handler
        self._logger.handlers[:] = [handler]
        self._logger.propagate = False
        self._apply()

    def _apply(self) -> None:
        self._handler.setFormatter(_formatter(self.settings.format))
        # The logger's level is the lowest enabled severity, so that disabled verbose
        # calls stay as cheap as ever; the filter drops the disabled ones above it.
        settings = self.settings
        enabled = [
            level
            for level, on in (
                (logging.ERROR, settings.error),
                (logging.WARNING, settings.warning),
                (logging.INFO, settings.info),
                (logging.DEBUG + 1 - settings.verbose_level, settings.verbose_level > 0),
            )
            if on
        ]
        self._logger.setLevel(min(enabled) if enabled else logging.CRITICAL + 1)

    def response(self) -> dict[str, Any]:
        """The settings as the logging extension reports them."""
        values = asdict(self.settings)
        return {
            "log_file": values["file"],
            "log_info": values["info"],
            "log_warning": values["warning"],
            "log_error": values["error"],
            "log_verbose_level": values["verbose_level"],
            "log_format": values["format"],
        }

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply checked changes (see :func:`http_changes`, :func:`grpc_changes`)."""
        self.settings = replace(self.settings, **changes)
        self._apply()
        return self.response()

    def close(self) -> None:
        self._handler.close()


_REFUSE_FILE = "log file location can not be updated through network protocol"
_FIELDS: dict[str, tuple[str, type]] = {
    "log_info": ("info", bool),
    "log_warning": ("warning", bool),
    "log_error": ("error", bool),
    "log_verbose_level": ("verbose_level", int),
    "log_format": ("format", str),
}
_TYPE_NAMES = {bool: "boolean", int: "int32", str: "string"}


def _check(name: str, value: Any) -> tuple[str, Any]:
    field, kind = _FIELDS[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidArgumentError(f"expect {_TYPE_NAMES[kind]} for '{name}'")
    if isinstance(value, int) and not 0 <= value <= _UINT32_MAX:
        raise InvalidArgumentError(f"expect a non-negative int32 for '{name}', got {value}")
    if name == "log_format" and value not in FORMATS:
        raise InvalidArgumentError(f"invalid argument for log_format, got: {value}")
    return field, value


def http_changes(body: Any) -> dict[str, Any]:
    """Changes from a ``POST /v2/logging`` body; ``null`` values change nothing (Triton)."""
    if not isinstance(body, dict):
        raise InvalidArgumentError("log setting request must be a JSON object")
    if body.get("log_file") is not None:
        raise UnsupportedError(_REFUSE_FILE)
    changes = {}
    for name, value in body.items():
        if name in _FIELDS and value is not None:
            field, checked = _check(name, value)
            changes[field] = checked
    return changes


def grpc_changes(settings: Mapping[str, tuple[str | None, Any]]) -> dict[str, Any]:
    """Changes from ``LogSettingsRequest.settings``: name -> (oneof case, value)."""
    if "log_file" in settings:
        raise UnsupportedError(_REFUSE_FILE)
    expected = {bool: "bool_param", int: "uint32_param", str: "string_param"}
    changes = {}
    for name, (case, value) in settings.items():
        if name not in _FIELDS:
            continue
        kind = _FIELDS[name][1]
        if case != expected[kind]:
            raise InvalidArgumentError(f"expect {_TYPE_NAMES[kind]} for '{name}'")
        field, checked = _check(name, value)
        changes[field] = checked
    return changes
