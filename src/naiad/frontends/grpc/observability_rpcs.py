"""gRPC ``TraceSetting`` and ``LogSettings``, and request tracing at the gRPC edge.

They only translate between Triton's protobuf messages and the observability API. A
traced ModelInfer gets ``GRPC_WAITREAD_START``/``_END`` when its handler starts (grpc.aio
hands over a message it has already read, so the two coincide) and ``GRPC_SEND_START``/
``_END`` around building the response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from tritonclient.grpc import service_pb2 as pb

from naiad.core.service import InferenceService
from naiad.errors import InvalidArgumentError, UnsupportedError
from naiad.observability.trace_context import CURRENT_TRACE, RequestTrace

if TYPE_CHECKING:
    from naiad.observability.runtime import Observability


def start_trace(
    observability: Observability | None, context: grpc.aio.ServicerContext, model: str
) -> RequestTrace | None:
    tracer = observability.tracer if observability is not None else None
    if tracer is None or not tracer.active:
        return None
    carrier = None
    if tracer.otel:
        carrier = {str(k): str(v) for k, v in (context.invocation_metadata() or ())}
    trace = tracer.start(model, "GRPC", carrier)
    if trace is not None:
        trace.stamp("GRPC_WAITREAD_START")
        trace.stamp("GRPC_WAITREAD_END")
        CURRENT_TRACE.set(trace)
    return trace


def finish_trace(trace: RequestTrace | None) -> None:
    if trace is not None:
        trace.stamp("GRPC_SEND_END")
        CURRENT_TRACE.set(None)
        trace.finish()


def trace_setting(
    observability: Observability | None,
    service: InferenceService,
    request: pb.TraceSettingRequest,
) -> pb.TraceSettingResponse:
    tracer = observability.tracer if observability is not None else None
    if tracer is None:
        raise UnsupportedError("the trace extension is not available on this server")
    model = request.model_name
    if model and not service.model_ready(model):
        raise InvalidArgumentError(f"Request for unknown model : {model}")
    if request.settings:
        # An empty value list clears the setting, as Triton reads it.
        update = {k: (list(v.value) or None) for k, v in request.settings.items()}
        values = tracer.update(model, update)
    else:
        values = tracer.settings_response(model)
    response = pb.TraceSettingResponse()
    for name, items in values.items():
        response.settings[name].value.extend(items)
    return response


def log_settings(
    observability: Observability | None, request: pb.LogSettingsRequest
) -> pb.LogSettingsResponse:
    from naiad.observability.log_settings import grpc_changes

    logs = observability.logs if observability is not None else None
    if logs is None:
        raise UnsupportedError("the logging extension is not available on this server")
    values: dict[str, Any]
    if request.settings:
        settings = {
            name: (value.WhichOneof("parameter_choice"), _param(value))
            for name, value in request.settings.items()
        }
        values = logs.update(grpc_changes(settings))
    else:
        values = logs.response()
    response = pb.LogSettingsResponse()
    for name, value in values.items():
        setting = response.settings[name]
        if isinstance(value, bool):
            setting.bool_param = value
        elif isinstance(value, int):
            setting.uint32_param = value
        else:
            setting.string_param = value
    return response


def _param(value: pb.LogSettingsRequest.SettingValue) -> Any:
    case = value.WhichOneof("parameter_choice")
    return getattr(value, case) if case else None
