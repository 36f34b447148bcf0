"""The default scheduler: each request runs, unbatched, on the next free instance.

Free instances wait in a FIFO queue, so requests are served in arrival order and no
instance runs two requests at once. Batching schedulers plug in beside this one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from naiad.backends.base import ExecuteResult, ExecutionTimes, ModelInstance
from naiad.inference import InferenceRequest


class DefaultScheduler:
    def __init__(self, instances: Sequence[ModelInstance]) -> None:
        self._instances = list(instances)
        self._idle: asyncio.Queue[ModelInstance] | None = None

    @property
    def instances(self) -> list[ModelInstance]:
        return self._instances

    def _queue(self) -> asyncio.Queue[ModelInstance]:
        # Created lazily so it binds to the running loop, not to whichever built us.
        if self._idle is None:
            self._idle = asyncio.Queue()
            for instance in self._instances:
                self._idle.put_nowait(instance)
        return self._idle

    async def execute(
        self, request: InferenceRequest, output_names: Sequence[str]
    ) -> ExecuteResult:
        idle = self._queue()
        instance = await idle.get()
        try:
            (result,) = await instance.execute([request], output_names, ExecutionTimes())
        finally:
            idle.put_nowait(instance)
        return result

    def close(self) -> None:
        for instance in self._instances:
            instance.close()
