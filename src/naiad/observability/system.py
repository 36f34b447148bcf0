"""CPU utilization and memory, polled every ``--metrics-interval-ms`` (Triton's CPU metrics).

Triton reads ``/proc/stat`` and ``/proc/meminfo``; psutil reads the same files on Linux
and works elsewhere too. Used memory is total minus available, as Triton computes it.
"""

from __future__ import annotations

import asyncio
import logging

import psutil

logger = logging.getLogger("naiad.metrics")


class SystemMetrics:
    def __init__(self, interval_ms: int) -> None:
        self.interval_s = max(0.05, interval_ms / 1000)
        self.cpu_utilization = 0.0  # 0.0 - 1.0 over the last interval, all cores
        self.memory_total_bytes = 0
        self.memory_used_bytes = 0
        self._task: asyncio.Task[None] | None = None
        psutil.cpu_percent(interval=None)  # the first call only sets the baseline
        self.poll()

    def poll(self) -> None:
        self.cpu_utilization = psutil.cpu_percent(interval=None) / 100.0
        memory = psutil.virtual_memory()
        self.memory_total_bytes = int(memory.total)
        self.memory_used_bytes = int(memory.total - memory.available)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="system-metrics")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.poll()
            except Exception:  # a failed poll keeps the last values; the next one may work
                logger.exception("failed to poll CPU and memory metrics")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
