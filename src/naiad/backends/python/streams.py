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
from naiad.backends.python.runtime._naiad_pb.messages import ExecuteDoneMsg
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
        # StreamResponseMsg's header, read in place (once per streamed response).
        header = frame.header
        batch, index, final = header["batch"], header["index"], bool(header["final"])
        requests = self._batches.get(batch)
        if requests is None or not 0 <= index < len(requests):
            return  # the batch was already failed (worker gone, execute raised)
        request = requests[index]
        if request is None:
            return
        raw = header.get("response")
        result = None if raw is None else decode_response(frame, raw)
        if final:
            self._close(batch, requests, index)
        if request.response_sink is not None:
            request.response_sink(result, final)

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
