"""Python models' custom metrics (``pb_utils.MetricFamily``) on the server's ``/metrics``.

Each worker sends a snapshot of all its families whenever they change (a ``metrics``
frame, JSON values only). The instance keeps the latest one in a ``WorkerMetrics``,
registered with ``naiad.observability.custom_metrics.register_source``: the metrics
endpoint reads it at scrape time. Families of several instances merge there (counters
add up), as Triton's single registry shares a family between instances.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from naiad.observability.custom_metrics import (
    CustomFamily,
    CustomSample,
    Kind,
    register_source,
)

logger = logging.getLogger("naiad.python")

_KINDS: dict[str, Kind] = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def families_from_wire(raw: list[Any]) -> list[CustomFamily]:
    """A worker's ``pb_metrics.snapshot()`` as custom families (malformed entries raise)."""
    families = []
    for name, description, kind, samples in raw:
        families.append(
            CustomFamily(
                str(name),
                str(description),
                _KINDS[kind],
                [
                    CustomSample(
                        {str(k): str(v) for k, v in labels.items()},
                        value=float(value),
                        buckets=[float(b) for b in buckets],
                        bucket_counts=[int(c) for c in counts],
                        sum=float(total),
                    )
                    for labels, value, buckets, counts, total in samples
                ],
            )
        )
    return families


class WorkerMetrics:
    """The latest snapshot from one instance's worker, exported until ``close``."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._families: list[CustomFamily] = []
        self._unregister: Callable[[], None] | None = None
        self._closed = False

    def update(self, raw: Any) -> None:
        if self._closed:  # a last snapshot that crossed the unload
            return
        try:
            self._families = families_from_wire(raw)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            logger.warning("%s: ignoring malformed custom metrics: %s", self._label, exc)
            return
        if self._unregister is None:  # export only once the model made a family
            self._unregister = register_source(self.families)

    def families(self) -> list[CustomFamily]:
        return self._families

    def close(self) -> None:
        """Stop exporting (the model was unloaded)."""
        self._closed = True
        unregister, self._unregister = self._unregister, None
        if unregister is not None:
            unregister()
        self._families = []
