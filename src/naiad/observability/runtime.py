"""Observability as the server runs it: built from the settings, started and stopped.

:class:`Observability` is what the frontends get (the tracer, the log control, the
dashboard); :class:`ObservabilityRuntime` is what the composition root holds: it also
installs the core's success observer, polls CPU and memory, and serves ``/metrics``.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import uvicorn
from prometheus_client.registry import CollectorRegistry

from naiad.core.service import InferenceService
from naiad.core.statistics import SUCCESS_OBSERVERS
from naiad.observability.custom_metrics import default_registry
from naiad.observability.dashboard import Dashboard
from naiad.observability.latency import Observer, RecorderSettings
from naiad.observability.log_settings import LogControl
from naiad.observability.metrics import TritonCollector
from naiad.observability.metrics_server import MetricsApp, start_metrics_listener
from naiad.observability.settings import ObservabilitySettings
from naiad.observability.system import SystemMetrics
from naiad.observability.tracing import Tracer

logger = logging.getLogger("naiad.server")


@dataclass(slots=True)
class Observability:
    """What the frontends use; a part left None is answered as not available."""

    tracer: Tracer | None = None
    logs: LogControl | None = None
    dashboard: Dashboard | None = None

    def extensions(self) -> tuple[str, ...]:
        """Server-metadata extensions that work with these parts."""
        return (("trace",) if self.tracer else ()) + (("logging",) if self.logs else ())


class ObservabilityRuntime:
    def __init__(
        self, settings: ObservabilitySettings, allow_metrics: bool, logs: LogControl | None
    ) -> None:
        """Raises ValueError when the trace configuration cannot work (say, no OTel SDK)."""
        self.settings = settings
        metrics = settings.metrics
        self.system = SystemMetrics(metrics.interval_ms) if metrics.cpu_metrics else None
        self.tracer = Tracer(settings.trace)
        self.frontends = Observability(tracer=self.tracer, logs=logs)
        recorder = RecorderSettings(
            summaries=allow_metrics and metrics.summary_latencies,
            histograms=allow_metrics and metrics.histogram_latencies,
            dashboard=settings.allow_dashboard,
        )
        self._observer = (
            Observer(recorder)
            if recorder.summaries or recorder.histograms or recorder.dashboard
            else None
        )
        self._metrics_server: uvicorn.Server | None = None
        self._service: InferenceService | None = None
        self.metrics_port: int | None = None

    def attach(self, service: InferenceService) -> None:
        """Install the core hook; build the dashboard over ``service`` (before listeners)."""
        if self._observer is not None and self._observer not in SUCCESS_OBSERVERS:
            SUCCESS_OBSERVERS.append(self._observer)
        if self.settings.allow_dashboard:
            self.frontends.dashboard = Dashboard(service, self.system)
        self._service = service

    async def start_metrics(self, family: socket.AddressFamily, host: str, port: int) -> int:
        """Serve ``/metrics``; returns the bound port. Raises OSError if it cannot bind."""
        registry = CollectorRegistry(auto_describe=False)
        service = self._service
        assert service is not None, "attach() comes first"
        registry.register(
            TritonCollector(
                lambda: service.model_statistics(),
                self.settings.metrics,
                self.system,
                default_registry(),
            )
        )
        self._metrics_server, self.metrics_port = await start_metrics_listener(
            MetricsApp(registry), family, host, port
        )
        return self.metrics_port

    def start_polling(self) -> None:
        if self.system is not None:
            self.system.start()

    async def stop(self) -> None:
        if self._metrics_server is not None:
            await self._metrics_server.shutdown()
            self._metrics_server = None
        if self.system is not None:
            self.system.stop()
        if self._observer is not None and self._observer in SUCCESS_OBSERVERS:
            SUCCESS_OBSERVERS.remove(self._observer)
        self.tracer.close()
