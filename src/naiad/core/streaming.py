"""The core's streaming inference path: 0..N responses per request, for decoupled models.

Frontends that stream (gRPC ``ModelStreamInfer``, HTTP ``generate_stream``) call
``InferenceService.infer_stream``. A non-decoupled model runs through the unary path
unchanged and streams its one response as final. A decoupled model's request carries
a ``response_sink`` the backend calls once per response; the responses flow through a
queue to the caller while the scheduler's ``submit`` runs beside them (the instance is
free again once ``execute`` returns, even if responses keep coming, as in Triton).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from naiad.backends.base import now_ns
from naiad.core.scheduling.base import Completion
from naiad.core.statistics import BACKEND, SUCCESS_OBSERVERS, ComputeDurations
from naiad.core.validation import validate_request
from naiad.errors import NaiadError, UnavailableError
from naiad.inference import InferenceRequest, InferenceResponse

if TYPE_CHECKING:
    from naiad.core.model import ModelVersion


@dataclass(slots=True)
class StreamItem:
    """One streamed answer: a response or an error, and whether it ends the request.

    ``empty`` marks a flag-only final (the model sent no response with it): frontends
    send such a response only when the client asked for empty final responses.
    """

    response: InferenceResponse | None
    error: NaiadError | None = None
    final: bool = False
    empty: bool = False


# The scheduler's submit for a decoupled request is never cancelled (the worker keeps
# running the batch); these keep the tasks alive after their consumer went away.
_SUBMISSIONS: set[asyncio.Task[Completion]] = set()
_DONE = object()


async def decoupled_stream(
    model: ModelVersion, request: InferenceRequest
) -> AsyncIterator[StreamItem]:
    """Responses of a decoupled model to ``request`` until its final one."""
    start_ns = now_ns()
    batch_size = validate_request(request, model.io, model.name)
    scheduler = model.scheduler
    if scheduler is None:
        raise UnavailableError(f"model '{model.name}' version {model.version} is unloaded")
    requested = model.requested_outputs(request)
    queue: asyncio.Queue[Any] = asyncio.Queue()
    request.response_sink = lambda result, final: queue.put_nowait((result, final))
    task = asyncio.ensure_future(
        scheduler.submit(request, batch_size, [output.name for output in requested])
    )
    _SUBMISSIONS.add(task)

    def executed(task: asyncio.Task[Completion]) -> None:
        _SUBMISSIONS.discard(task)
        queue.put_nowait(_DONE)
        if task.cancelled() or task.exception() is not None:
            model.stats.record_failure(now_ns() - start_ns, BACKEND)
            return
        completion = task.result()
        request_ns = now_ns() - start_ns
        compute = ComputeDurations.from_times(completion.times)
        size = max(1, batch_size)
        model.stats.record_success(size, request_ns, completion.queue_ns, compute)
        for observer in SUCCESS_OBSERVERS:
            observer(model, size, request_ns, completion.queue_ns, compute)

    task.add_done_callback(executed)
    # Ends before the final response only when the consumer went away (a closed
    # stream, a cancelled call) or the batch failed: the model may stop early.
    finished = False
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                error = None if task.cancelled() else task.exception()
                if error is None:
                    continue  # execute returned; responses may still come
                if isinstance(error, NaiadError):
                    yield StreamItem(None, error, True)
                    return
                raise error
            result, final = item
            if isinstance(result, NaiadError):
                yield StreamItem(None, result, final)
            elif result is None:
                if final:
                    yield StreamItem(model.respond(request, requested, {}, True), None, True, True)
            else:
                try:
                    response = model.respond(request, requested, result, partial=True)
                except NaiadError as exc:
                    yield StreamItem(None, exc, final)
                else:
                    yield StreamItem(response, None, final)
            if final:
                finished = True
                return
    finally:
        if not finished and request.cancel_hook is not None:
            request.cancel_hook()
