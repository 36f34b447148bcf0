"""Server-side bookkeeping of a decoupled python instance's open response streams.

A decoupled model answers each request with 0..N ``stream_response`` frames, before or
after its ``execute`` returns; the last one carries the final flag. Until then the
request stays open here, keyed by (batch, index), and each response goes to the
request's ``response_sink`` (set by the core's streaming path). Requests still open
when ``execute`` fails, or when the worker dies, get that error as their final response.
Everything here runs on the server's event loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from naiad.backends.base import ExecuteResult
from naiad.backends.python.codec import decode_response
from naiad.backends.python.runtime._naiad_pb.messages import ExecuteDoneMsg, StreamResponseMsg
from naiad.backends.python.runtime._naiad_pb.wire import Frame
from naiad.errors import InternalError, NaiadError
from naiad.inference import InferenceRequest


class OpenStreams:
    def __init__(self) -> None:
        # batch -> its requests; an entry becomes None once its final response went out.
        self._batches: dict[int, list[InferenceRequest | None]] = {}

    def open(self, batch: int, requests: Sequence[InferenceRequest]) -> None:
        self._batches[batch] = list(requests)

    def on_response(self, frame: Frame) -> None:
        message = StreamResponseMsg.from_header(frame.header)
        requests = self._batches.get(message.batch)
        if requests is None or not 0 <= message.index < len(requests):
            return  # the batch was already failed (worker gone, execute raised)
        request = requests[message.index]
        if request is None:
            return
        result = None if message.response is None else decode_response(frame, message.response)
        if message.final:
            self._close(message.batch, requests, message.index)
        if request.response_sink is not None:
            request.response_sink(result, message.final)

    def execute_done(self, frame: Frame, count: int) -> list[ExecuteResult]:
        """``execute`` returned; its responses come (or came) as stream frames.

        The results the scheduler gets are empty: the streaming path reads the sinks.
        """
        done = ExecuteDoneMsg.from_header(frame.header)
        if done.error is not None:
            self.fail_batch(done.batch, InternalError(done.error))
        return [{} for _ in range(count)]

    def fail_batch(self, batch: int, error: NaiadError) -> None:
        """``execute`` failed: every request of the batch still open ends with ``error``."""
        requests = self._batches.pop(batch, None)
        for request in requests or ():
            if request is not None and request.response_sink is not None:
                request.response_sink(error, True)

    def fail_all(self, error: NaiadError) -> None:
        """The worker is gone: every open request ends with ``error``."""
        for batch in list(self._batches):
            self.fail_batch(batch, error)

    def _close(self, batch: int, requests: list[InferenceRequest | None], index: int) -> None:
        requests[index] = None
        if not any(requests):
            del self._batches[batch]
