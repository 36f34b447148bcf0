"""The tracer: which requests to trace, and where their traces go.

Sampling is Triton's: with ``trace_rate`` N, every N-th request of a setting's scope
(the global setting, or a model's own) is traced while ``trace_count`` lasts. In
OpenTelemetry mode a request that carries a W3C ``traceparent`` is always traced, as in
Triton. Finished traces go to the trace file (Triton's JSON, every ``log_frequency``
traces to ``FILE.N``, or to ``FILE`` at shutdown when it is 0) or to the OTLP exporter.

Everything runs on the event loop thread, so counters need no locks.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from naiad.errors import InvalidArgumentError
from naiad.observability.trace_context import RequestTrace
from naiad.observability.trace_settings import (
    TENSORS,
    TIMESTAMPS,
    Overrides,
    SettingUpdate,
    TraceConfig,
    TraceSetting,
    parse_update,
    setting_values,
)

logger = logging.getLogger("naiad.trace")


@dataclass(slots=True)
class _Scope:
    """Sampling state of one setting scope."""

    sampled: int = 0  # requests seen
    remaining: int = -1  # traces left; -1: no limit


class TraceFile:
    """Collects trace records and writes them as Triton's JSON array files."""

    def __init__(self, path: str, log_frequency: int) -> None:
        self._path = path
        self._log_frequency = log_frequency
        self._records: list[dict[str, Any]] = []
        self._traces = 0
        self._index = 0

    def add(self, trace: RequestTrace) -> None:
        self._records.append(trace.record())
        self._records.extend(trace.tensors)
        self._traces += 1
        if self._log_frequency and self._traces >= self._log_frequency:
            self._write(f"{self._path}.{self._index}")
            self._index += 1

    def close(self) -> None:
        if self._records or (not self._log_frequency and self._index == 0):
            target = f"{self._path}.{self._index}" if self._log_frequency else self._path
            self._write(target)

    def _write(self, path: str) -> None:
        try:
            # A JSON array, one record per line: compact like Triton's, and greppable.
            lines = b",\n".join(orjson.dumps(record) for record in self._records)
            Path(path).write_bytes(b"[\n" + lines + b"\n]\n" if lines else b"[]\n")
        except OSError as exc:
            logger.error("failed to write trace file %s: %s", path, exc)
        self._records = []
        self._traces = 0


class Tracer:
    def __init__(self, config: TraceConfig) -> None:
        self.config = config
        self._initial = config.setting
        self._global = config.setting
        self._overrides: dict[str, Overrides] = {}
        self._scopes: dict[str, _Scope] = {"": _Scope(remaining=config.setting.count)}
        self._ids = itertools.count(1)
        self._file: TraceFile | None = None
        self._exporter: Any = None
        if config.setting.mode == "triton" and config.setting.file:
            self._file = TraceFile(config.setting.file, config.setting.log_frequency)
        if config.setting.mode == "opentelemetry":
            from naiad.observability.otel import OtelExporter

            self._exporter = OtelExporter(config)
        self.active = False
        self._refresh()

    @property
    def otel(self) -> bool:
        """Whether clients' trace context matters (OpenTelemetry mode)."""
        return self._exporter is not None

    def _refresh(self) -> None:
        # One flag for the hot path: could any request be traced at all?
        settings = [self._global, *(o.apply(self._global) for o in self._overrides.values())]
        self.active = any(s.level for s in settings) and (
            self._file is not None or self._exporter is not None
        )

    # -- settings (the trace extension) ----------------------------------------------

    def setting(self, model: str = "") -> TraceSetting:
        setting = self._global
        overrides = self._overrides.get(model) if model else None
        if overrides is not None:
            setting = overrides.apply(setting)
        return replace(setting, count=self._scope(model).remaining)

    def settings_response(self, model: str = "") -> dict[str, list[str]]:
        return setting_values(self.setting(model), self.config)

    def update(self, model: str, update: SettingUpdate) -> dict[str, list[str]]:
        """Apply a network update for ``model`` (``""``: global); the settings after it."""
        if model:
            current = self._overrides.get(model, Overrides())
            new = parse_update(update, current)
            if new.is_empty():
                self._overrides.pop(model, None)
                self._scopes.pop(model, None)
            else:
                self._overrides[model] = new
                effective = new.apply(self._global)
                scope = self._scopes.setdefault(model, _Scope(remaining=effective.count))
                if new.count != current.count:
                    scope.remaining = effective.count
        else:
            new = parse_update(update, Overrides())
            initial = self._initial
            self._global = replace(
                self._global,
                level=_pick(update, "trace_level", new.level, self._global.level, initial.level),
                rate=_pick(update, "trace_rate", new.rate, self._global.rate, initial.rate),
                count=_pick(update, "trace_count", new.count, self._global.count, initial.count),
                log_frequency=_pick(
                    update,
                    "log_frequency",
                    new.log_frequency,
                    self._global.log_frequency,
                    initial.log_frequency,
                ),
            )
            if "trace_count" in update:
                self._scopes[""].remaining = self._global.count
        self._refresh()
        return self.settings_response(model)

    def _scope(self, model: str) -> _Scope:
        return self._scopes.get(model) or self._scopes[""]

    # -- sampling ----------------------------------------------------------------------

    def start(
        self, model: str, protocol: str, headers: Mapping[str, str] | None = None
    ) -> RequestTrace | None:
        """A trace for this request, or None; call only when :attr:`active`."""
        overrides = self._overrides.get(model)
        setting = overrides.apply(self._global) if overrides is not None else self._global
        if not setting.level:
            return None
        context = None
        if self._exporter is not None and headers is not None:
            context = self._exporter.extract(headers)
        scope = self._scopes[model] if overrides is not None else self._scopes[""]
        if context is None:
            # Triton: every rate-th request of the scope, while the count lasts.
            if scope.remaining == 0 or setting.rate == 0:
                return None
            scope.sampled += 1
            if scope.sampled % setting.rate:
                return None
            if scope.remaining > 0:
                scope.remaining -= 1
        return RequestTrace(
            next(self._ids),
            protocol,
            self._finish,
            timestamps=TIMESTAMPS in setting.level,
            tensors=TENSORS in setting.level and self._exporter is None,
            otel_context=context,
        )

    def _finish(self, trace: RequestTrace) -> None:
        if self._exporter is not None:
            self._exporter.export(trace)
        elif self._file is not None:
            self._file.add(trace)

    def close(self) -> None:
        """Write what the trace file still holds; flush exported spans."""
        if self._file is not None:
            self._file.close()
        if self._exporter is not None:
            self._exporter.close()


def _pick(update: SettingUpdate, name: str, new: Any, current: Any, initial: Any) -> Any:
    """Global update: unchanged if absent, start-up value if cleared, else the new value."""
    if name not in update:
        return current
    if update[name] is None:
        return initial
    return new


def http_update(body: Any) -> dict[str, list[str] | None]:
    """A trace-setting JSON body as a :data:`SettingUpdate` (strings, arrays or null)."""
    if not isinstance(body, dict):
        raise InvalidArgumentError("trace setting request must be a JSON object")
    update: dict[str, list[str] | None] = {}
    for name, value in body.items():
        if value is None:
            update[name] = None
        elif isinstance(value, list):
            update[name] = [_as_text(name, item) for item in value]
        else:
            update[name] = [_as_text(name, value)]
    return update


def _as_text(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidArgumentError(f"Unable to parse '{name}': expected a string")
    return str(value)


def http_response(values: dict[str, list[str]]) -> dict[str, Any]:
    """Triton's JSON: ``trace_level`` is an array, every other setting a string."""
    return {k: (v if k == "trace_level" else (v[0] if v else "")) for k, v in values.items()}
