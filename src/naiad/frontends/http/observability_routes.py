"""HTTP routes of the trace and logging extensions, and request tracing at the HTTP edge.

They only translate: JSON bodies into the observability API's updates and its settings
back into Triton's JSON. The tracer decides which requests are traced; this module
stamps the HTTP side of a trace (``HTTP_RECV_*``, ``HTTP_SEND_*``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from naiad.core.service import InferenceService
from naiad.errors import InvalidArgumentError, UnsupportedError
from naiad.observability.trace_context import CURRENT_TRACE, RequestTrace

if TYPE_CHECKING:
    from naiad.observability.runtime import Observability

Scope = dict[str, Any]


def start_trace(
    observability: Observability | None, scope: Scope, model: str
) -> RequestTrace | None:
    """Trace this request if the tracer samples it; the core finds it in CURRENT_TRACE."""
    tracer = observability.tracer if observability is not None else None
    if tracer is None or not tracer.active:
        return None
    carrier = None
    if tracer.otel:
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    trace = tracer.start(model, "HTTP", carrier)
    if trace is not None:
        trace.stamp("HTTP_RECV_START")
        CURRENT_TRACE.set(trace)
    return trace


def trace_setting(
    observability: Observability | None,
    service: InferenceService,
    model: str,
    body: Any | None,
) -> dict[str, Any]:
    """GET (``body`` None) or POST ``/v2[/models/{model}]/trace/setting``."""
    from naiad.observability.tracing import http_response, http_update

    tracer = observability.tracer if observability is not None else None
    if tracer is None:
        raise UnsupportedError("the trace extension is not available on this server")
    if model and not service.model_ready(model):
        raise InvalidArgumentError(f"Request for unknown model : {model}")
    if body is None:
        return http_response(tracer.settings_response(model))
    return http_response(tracer.update(model, http_update(body)))


def log_settings(observability: Observability | None, body: Any | None) -> dict[str, Any]:
    """GET (``body`` None) or POST ``/v2/logging``."""
    from naiad.observability.log_settings import http_changes

    logs = observability.logs if observability is not None else None
    if logs is None:
        raise UnsupportedError("the logging extension is not available on this server")
    if body is None:
        return logs.response()
    return logs.update(http_changes(body))
