"""gRPC core settings that must be in the environment before ``grpc`` is first imported.

gRPC core reads ``GRPC_EXPERIMENTS`` once, when the package loads, so this module runs
its one step on import and the command line imports it before anything that imports
``grpc`` (``tritonclient.grpc`` does).

The step: serve accepted connections through gRPC core's long-standing listener rather
than the EventEngine listener. With the EventEngine listener every call also wakes a
pool of EventEngine threads, which hand the call to the asyncio loop; on the measured
machine (2 cores, grpcio 1.85) the legacy listener cut the server's CPU per unary call
by a fifth to a quarter and raised throughput by 15-35 % (docs/performance.md).

A user's own ``GRPC_EXPERIMENTS`` (even an empty one) is left as it is, and so is any
grpcio outside the range this was measured on, where the experiment's name may not
exist (gRPC prints an error for an unknown one).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import MutableMapping
from pathlib import Path

LEGACY_LISTENER_EXPERIMENT = "-event_engine_listener"
# Releases that know the experiment by this name and were measured with it off.
_MEASURED_GRPCIO = ((1, 60), (1, 90))


def installed_grpcio_version() -> tuple[int, int] | None:
    """grpcio's (major, minor), read from its metadata file without importing it
    (``importlib.metadata`` costs ~80 ms of start-up; this costs well under one)."""
    spec = importlib.util.find_spec("grpc")
    if spec is None or spec.origin is None:
        return None
    try:
        text = (Path(spec.origin).parent / "_grpcio_metadata.py").read_text()
    except OSError:
        return None
    found = re.search(r"(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def prefer_legacy_listener(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``GRPC_EXPERIMENTS`` for the legacy listener where that is safe; True if set."""
    if "GRPC_EXPERIMENTS" in environ:
        return False
    version = installed_grpcio_version()
    low, high = _MEASURED_GRPCIO
    if version is None or not low <= version < high:
        return False
    environ["GRPC_EXPERIMENTS"] = LEGACY_LISTENER_EXPERIMENT
    return True


prefer_legacy_listener()
