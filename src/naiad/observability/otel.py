"""OpenTelemetry export of request traces: OTLP over HTTP through the OpenTelemetry SDK.

Spans follow Triton's layout: a root ``InferRequest`` span for the whole request (its
parent is the client's W3C trace context when the request carried one, so the spans
join the client's trace), a span named after the model for the core's part, and a
``compute`` span under it; each timestamp is an event on its span. Naiad stamps with
the monotonic clock; spans need wall-clock times, so one offset converts them.

The SDK (``pip install 'naiad[otel]'``) is imported only in OpenTelemetry mode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from naiad.observability.trace_context import RequestTrace
from naiad.observability.trace_settings import TraceConfig

logger = logging.getLogger("naiad.trace")

_MODEL_EVENTS = ("REQUEST_START", "QUEUE_START", "REQUEST_END")
_COMPUTE_EVENTS = ("COMPUTE_START", "COMPUTE_INPUT_END", "COMPUTE_OUTPUT_START", "COMPUTE_END")
_BSP_OPTIONS = {
    "bsp_max_queue_size": "max_queue_size",
    "bsp_schedule_delay": "schedule_delay_millis",
    "bsp_max_export_batch_size": "max_export_batch_size",
}


class OtelExporter:
    def __init__(self, config: TraceConfig) -> None:
        try:
            from opentelemetry import trace as otel_trace
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as exc:
            raise ValueError(
                f"--trace-config mode=opentelemetry needs the OpenTelemetry SDK ({exc}); "
                "install it with: pip install 'naiad[otel]'"
            ) from None
        resource = Resource.create({"service.name": "naiad", **config.otel_resource})
        self._provider = TracerProvider(resource=resource)
        options: dict[str, Any] = {
            _BSP_OPTIONS[k]: v for k, v in config.otel_options.items() if k in _BSP_OPTIONS
        }
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otel_url), **options)
        )
        self._tracer = self._provider.get_tracer("naiad")
        self._propagator = TraceContextTextMapPropagator()
        self._set_span_in_context = otel_trace.set_span_in_context
        # Monotonic ns + offset = wall-clock ns (spans carry epoch times).
        self._offset_ns = time.time_ns() - time.monotonic_ns()

    def extract(self, headers: Mapping[str, str]) -> Any | None:
        """The client's trace context from ``traceparent``/``tracestate``, or None."""
        if "traceparent" not in headers:
            return None
        context = self._propagator.extract(headers)
        return context or None

    def export(self, trace: RequestTrace) -> None:
        stamps = trace.ordered_stamps()
        if not stamps:
            return
        offset = self._offset_ns
        parent: Any = trace.otel_context  # the client's Context, or None
        root = self._tracer.start_span(
            "InferRequest", context=parent, start_time=stamps[0][1] + offset
        )
        model_stamps = {n: ns for n, ns in stamps if n in _MODEL_EVENTS}
        compute_stamps = {n: ns for n, ns in stamps if n in _COMPUTE_EVENTS}
        for name, ns in stamps:
            if name not in model_stamps and name not in compute_stamps:
                root.add_event(name, timestamp=ns + offset)
        if "REQUEST_START" in model_stamps:
            model_span = self._tracer.start_span(
                trace.model_name,
                context=self._set_span_in_context(root),
                start_time=model_stamps["REQUEST_START"] + offset,
                attributes={
                    "triton.model_name": trace.model_name,
                    "triton.model_version": trace.model_version,
                    "triton.trace_id": trace.id,
                    "triton.trace_parent_id": 0,
                    "triton.request_id": trace.request_id,
                },
            )
            for name in _MODEL_EVENTS:
                if name in model_stamps:
                    model_span.add_event(name, timestamp=model_stamps[name] + offset)
            if "COMPUTE_START" in compute_stamps:
                compute = self._tracer.start_span(
                    "compute",
                    context=self._set_span_in_context(model_span),
                    start_time=compute_stamps["COMPUTE_START"] + offset,
                )
                for name in _COMPUTE_EVENTS:
                    compute.add_event(name, timestamp=compute_stamps[name] + offset)
                compute.end(end_time=compute_stamps["COMPUTE_END"] + offset)
            end = model_stamps.get("REQUEST_END", stamps[-1][1])
            model_span.end(end_time=end + offset)
        root.end(end_time=stamps[-1][1] + offset)

    def close(self) -> None:
        """Flush what the batch processor holds (bounded), then stop its thread."""
        try:
            self._provider.force_flush(timeout_millis=5000)
            self._provider.shutdown()
        except Exception:  # exporting is best effort; never fail a shutdown over it
            logger.exception("error flushing OpenTelemetry spans")
