"""Run one batch through the model's ``execute``: wire -> pb_utils requests -> wire.

A sync ``execute`` runs on the worker's loop thread, one batch at a time (the server
sends one at a time to such an instance). An ``async def execute`` runs as a task per
batch, so batches of one instance overlap on the worker's event loop.

Decoupled models answer through each request's response sender: every ``send`` (from
any thread, before or after ``execute`` returns) goes out at once as a
``stream_response`` frame; ``execute_done`` then only says that ``execute`` returned
(or the error that fails every request still open).

A ``cancel`` frame (the client went away) marks its request cancelled while the batch
is live: until ``execute`` answers, or for a decoupled batch until every request's
final response went out. A sync ``execute`` holds the loop, so ``is_cancelled()``
reads waiting cancel frames from the socket itself (``poll``).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any

from . import context
from .channel import Channel
from .errors import TritonModelException
from .messages import (
    CANCEL,
    R_CORRELATION,
    R_FLAGS,
    R_ID,
    R_INPUTS,
    R_PARAMETERS,
    R_REQUESTED,
    R_TIMEOUT,
    CancelMsg,
    ErrorInfo,
    ExecuteDoneMsg,
    ResponseMsg,
    execute_done_header,
    stream_response_header,
)
from .pb_request import InferenceRequest, InferenceResponse, InferenceResponseSender
from .pb_tensor import Tensor
from .types import TYPE_TO_WIRE, WIRE_TO_TYPE, array_from_wire, array_to_wire
from .wire import Frame, PayloadBuilder

_ERROR = 40


class BatchError(Exception):
    """A problem with what ``execute`` returned that fails the whole batch."""


class Executor:
    def __init__(
        self,
        model: Any,
        channel: Channel,
        instance_name: str,
        model_name: str,
        shared_memory: bool,
        shm_threshold_bytes: int,
        decoupled: bool = False,
    ) -> None:
        self._model = model
        self._decoupled = decoupled
        self._execute = getattr(model, "execute", None)
        self._channel = channel
        self._instance_name = instance_name
        self._model_name = model_name
        self._shared_memory = shared_memory
        self._threshold = shm_threshold_bytes
        self._tasks: set[asyncio.Task[None]] = set()
        # Batches whose requests a cancel frame may still reach.
        self._live: dict[int, list[InferenceRequest]] = {}
        # Cancels that overtook their batch (sent ahead of time, still in the socket while
        # the previous batch runs): (batch, index), applied when the batch is taken up.
        self._early_cancels: set[tuple[int, int]] = set()
        self._last_batch = -1
        self._started_ns: dict[int, int] = {}
        context.poll_cancel = self.poll

    def cancel(self, header: dict[str, Any]) -> None:
        message = CancelMsg.from_header(header)
        requests = self._live.get(message.batch)
        if requests is None:
            if message.batch > self._last_batch:
                self._early_cancels.add((message.batch, message.index))
            return
        if 0 <= message.index < len(requests):
            requests[message.index]._cancel()

    def poll(self) -> None:
        """Handle cancel frames waiting in the socket (a sync ``execute`` holds the loop)."""
        self._channel.poll(self._take_cancel)

    def _take_cancel(self, frame: Frame) -> bool:
        if frame.header.get("k") != CANCEL:
            return False
        self.cancel(frame.header)
        return True

    def _started(self, batch: int) -> int:
        return self._started_ns.pop(batch, 0)

    def _release_if_done(self, batch: int) -> None:
        """A decoupled batch is over once execute returned and every request is final."""
        requests = self._live.get(batch)
        if requests is not None and all(
            r._sender is None or (r._sender.closed and r._sender.execute_returned) for r in requests
        ):
            self._live.pop(batch, None)

    def handle(self, frame: Frame) -> None:
        header = frame.header
        batch: int = header["batch"]
        if batch > self._last_batch:
            self._last_batch = batch
        self._started_ns[batch] = time.monotonic_ns()
        try:
            requests = [self._request(raw, frame) for raw in header["requests"]]
            if self._early_cancels:
                for index, request in enumerate(requests):
                    if (batch, index) in self._early_cancels:
                        self._early_cancels.discard((batch, index))
                        request._cancel()
            if self._decoupled:
                for index, request in enumerate(requests):
                    request._sender = self._stream_sender(batch, index, request)
        except Exception as exc:  # a malformed batch is a server bug; say so per batch
            self._fail(batch, exc)
            return
        self._live[batch] = requests
        if self._execute is None:
            self._fail(
                batch,
                TritonModelException(
                    f"Python model '{self._model_name}' does not implement `execute` method."
                ),
            )
            return
        try:
            returned = self._execute(requests)
        except Exception as exc:
            self._fail(batch, exc)
            return
        if asyncio.iscoroutine(returned):
            task = asyncio.get_running_loop().create_task(
                self._finish_async(batch, requests, returned)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._reply(batch, requests, returned)

    async def _finish_async(self, batch: int, requests: list[InferenceRequest], coro: Any) -> None:
        try:
            returned = await coro
        except Exception as exc:
            self._fail(batch, exc)
            return
        self._reply(batch, requests, returned)

    def _request(self, raw: list[Any], frame: Frame) -> InferenceRequest:
        """A request from its ``RequestMsg`` wire list (read in place: once per request)."""
        inputs = []
        for name, datatype, shape, where, offset, nbytes in raw[R_INPUTS]:
            array = array_from_wire(datatype, shape, frame.tensor_bytes(where, offset, nbytes))
            inputs.append(Tensor._wrap(name, array, WIRE_TO_TYPE[datatype]))
        return InferenceRequest._incoming(
            raw[R_ID],
            inputs,
            raw[R_REQUESTED],
            raw[R_PARAMETERS],
            raw[R_CORRELATION],
            raw[R_FLAGS],
            raw[R_TIMEOUT],
            self._model_name,
        )

    def _stream_sender(
        self, batch: int, index: int, request: InferenceRequest
    ) -> InferenceResponseSender:
        def stream(response: InferenceResponse | None, final: bool) -> None:
            payload = PayloadBuilder(self._shared_memory, self._threshold)
            encoded = None if response is None else self._response(request, response, payload)
            self._channel.send(stream_response_header(batch, index, encoded, final), payload)
            if final:
                self._release_if_done(batch)

        return InferenceResponseSender(stream)

    def _reply(self, batch: int, requests: list[InferenceRequest], returned: Any) -> None:
        if self._decoupled:
            if returned is not None:
                self._fail(
                    batch,
                    BatchError(
                        f"Python model '{self._model_name}' is using the decoupled mode and "
                        "the execute function must return None."
                    ),
                )
                return
            for request in requests:
                if request._sender is not None:
                    request._sender.execute_returned = True
            self._release_if_done(batch)
            self._channel.send(ExecuteDoneMsg(batch, started_ns=self._started(batch)).to_header())
            return
        self._live.pop(batch, None)
        payload = PayloadBuilder(self._shared_memory, self._threshold)
        try:
            responses = self._responses(requests, returned, payload)
        except Exception as exc:
            self._fail(batch, exc)
            return
        self._channel.send(
            execute_done_header(batch, responses, None, self._started_ns.pop(batch, 0)), payload
        )

    def _responses(
        self, requests: list[InferenceRequest], returned: Any, payload: PayloadBuilder
    ) -> list[list[Any]]:
        """Each request's ``ResponseMsg`` wire list."""
        for request in requests:
            if request._sender is not None:
                request._sender.execute_returned = True
        if returned is None:
            returned = [None] * len(requests)
        if not isinstance(returned, list | tuple):
            raise BatchError(
                f"Expected a list in the execute return, found type '{type(returned)}'."
            )
        if len(returned) != len(requests):
            raise BatchError(
                "Number of InferenceResponse objects do not match the number of "
                f"InferenceRequest objects. InferenceRequest(s) size is:{len(requests)}, "
                f"and InferenceResponse(s) size is:{len(returned)}"
            )
        return [self._response(r, p, payload) for r, p in zip(requests, returned, strict=True)]

    def _response(
        self, request: InferenceRequest, response: Any, payload: PayloadBuilder
    ) -> list[Any]:
        """One request's ``ResponseMsg`` wire list; its output bytes go into ``payload``."""
        if response is None and request._sender is not None:
            response = request._sender.response
        if response is None:
            return ResponseMsg(
                error=ErrorInfo("INTERNAL", "the model returned no response for this request")
            ).to_wire()
        if not isinstance(response, InferenceResponse):
            raise BatchError(
                "Expected an 'InferenceResponse' object in the execute function return list, "
                f"found type '{type(response)}'."
            )
        error = response.error()
        if error is not None:
            return ResponseMsg(error=ErrorInfo(error.code_name(), error.message())).to_wire()
        wanted = request._requested
        outputs = []
        for tensor in response.output_tensors():
            name = tensor.name()
            if name not in wanted:
                continue  # Triton returns only what the request asked for
            array = tensor.as_numpy()
            dtype = tensor.triton_dtype()
            # A numpy shape is a tuple of Python ints already.
            desc: list[Any] = [name, TYPE_TO_WIRE[dtype], list(array.shape)]
            payload.add(array_to_wire(dtype, array), desc)
            outputs.append(desc)
        return [outputs, None, response.parameters()]

    def _fail(self, batch: int, exc: BaseException) -> None:
        detail = str(exc) if isinstance(exc, BatchError) else f"{type(exc).__name__}: {exc}"
        message = (
            f"Failed to process the request(s) for model instance '{self._instance_name}', "
            f"message: {detail}"
        )
        trace = "".join(traceback.format_exception(exc)).rstrip()
        context.log_sink(_ERROR, f"{message}\n{trace}", "execution.py", 0)
        self._live.pop(batch, None)
        self._channel.send(ExecuteDoneMsg(batch, [], message, self._started(batch)).to_header())
