"""Observability: Prometheus metrics, request tracing, run-time log settings, the dashboard.

Layering: :mod:`naiad.observability.trace_context` is a leaf the core may import (it
carries a request's trace through the core without the core knowing how traces are
written). Everything else here sits beside the frontends: it reads the core (statistics,
the model manager) and is wired in by the composition root, ``naiad.server``.

This package imports nothing heavy at import time; ``prometheus_client`` and the
OpenTelemetry SDK are imported by the modules that need them.
"""
