"""Business Logic Scripting in the worker: a model's calls to other models of the server.

``InferenceRequest.exec`` / ``async_exec`` and ``pb_utils.load_model`` /
``unload_model`` / ``is_model_ready`` become ``bls_request`` frames over the worker's
channel; the server runs them through its core service and answers with
``bls_response`` frames (one per response; the last is final), keyed by a call number.

Waiting without deadlock:

* from a coroutine (``async_exec``): an asyncio future, answered by the loop;
* from the loop's own thread (a sync ``execute``, which runs there): the loop cannot
  run, so the call drives the socket itself (``Channel.pump_until``) until its answer
  comes; frames for anything else wait, in order, for the loop;
* from another thread: the loop delivers the answer and the thread waits on an event.
  (A sync ``execute`` that blocks its loop thread while *other* threads make BLS calls
  cannot be served: their frames would wait for the loop. Call from ``execute`` itself,
  from ``async def execute``, or from threads after ``execute`` returned.)
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from .errors import CODE_NAMES, TritonError, TritonModelException
from .messages import (
    BLS_RESPONSE,
    T_DATATYPE,
    T_NAME,
    T_NBYTES,
    T_OFFSET,
    T_SHAPE,
    T_WHERE,
    BlsRequestMsg,
    BlsResponseMsg,
    RequestMsg,
    ResponseMsg,
)
from .pb_tensor import Tensor
from .types import TYPE_TO_WIRE, WIRE_TO_TYPE, array_from_wire, array_to_wire
from .wire import Frame, PayloadBuilder

if TYPE_CHECKING:
    from .channel import Channel
    from .pb_request import InferenceRequest, InferenceResponse


class _Call:
    """The answers to one BLS call as they arrive (from the loop, or from a pump)."""

    __slots__ = ("answers", "done", "event", "future", "loop")

    def __init__(self) -> None:
        self.answers: deque[tuple[BlsResponseMsg, Frame]] = deque()
        self.done = False
        self.event = threading.Event()
        # Set while a coroutine awaits the next answer.
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, message: BlsResponseMsg, frame: Frame) -> None:
        self.answers.append((message, frame))
        self.done = self.done or message.final
        self.event.set()
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


class BlsClient:
    def __init__(
        self,
        channel: Channel,
        loop: asyncio.AbstractEventLoop,
        shared_memory: bool,
        threshold: int,
    ) -> None:
        self._channel = channel
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._shared_memory = shared_memory
        self._threshold = threshold
        self._calls: dict[int, _Call] = {}
        self._numbers = itertools.count()

    # -- frames from the server --------------------------------------------------------

    def on_frame(self, frame: Frame) -> bool:
        """Take a ``bls_response`` frame (on the loop's thread); False for other frames."""
        if frame.header.get("k") != BLS_RESPONSE:
            return False
        message = BlsResponseMsg.from_header(frame.header)
        call = self._calls.get(message.call)
        if call is not None:
            if message.final:
                del self._calls[message.call]
            call.add(message, frame)
        return True

    # -- starting calls ----------------------------------------------------------------

    def start(self, message: BlsRequestMsg, payload: PayloadBuilder | None = None) -> _Call:
        message.call = next(self._numbers)
        call = _Call()
        self._calls[message.call] = call  # a dict: safe to fill from any thread
        self._channel.send(message.to_header(), payload)
        return call

    def start_infer(self, request: InferenceRequest, decoupled: bool) -> _Call:
        payload = PayloadBuilder(self._shared_memory, self._threshold)
        inputs = []
        for tensor in request.inputs():
            array = tensor.as_numpy()
            desc: list[Any] = [
                tensor.name(),
                TYPE_TO_WIRE[tensor.triton_dtype()],
                [int(d) for d in array.shape],
            ]
            payload.add(array_to_wire(tensor.triton_dtype(), array), desc)
            inputs.append(desc)
        wire = RequestMsg(
            request.request_id(),
            inputs,
            list(request.requested_output_names()),
            request.parameters(),
            request.correlation_id(),
            request.flags(),
            request.timeout(),
        ).to_wire()
        version = request._model_version
        message = BlsRequestMsg(
            model_name=request._model_name,
            model_version="" if version is None or version < 0 else str(version),
            request=wire,
            decoupled=decoupled,
        )
        return self.start(message, payload)

    # -- waiting -----------------------------------------------------------------------

    def next_blocking(self, call: _Call) -> tuple[BlsResponseMsg, Frame]:
        if not call.answers:
            if threading.get_ident() == self._loop_thread:
                self._channel.pump_until(lambda: bool(call.answers), self.on_frame)
            else:
                while not call.answers:
                    call.event.wait()
                    call.event.clear()
        return call.answers.popleft()

    async def next_async(self, call: _Call) -> tuple[BlsResponseMsg, Frame]:
        while not call.answers:
            call.future = self._loop.create_future()
            await call.future
            call.future = None
        return call.answers.popleft()


def to_response(message: BlsResponseMsg, frame: Frame) -> InferenceResponse:
    """A ``pb_utils.InferenceResponse`` from one answer (errors as ``error()``)."""
    from .pb_request import InferenceResponse

    if message.response is None:
        return InferenceResponse()
    response = ResponseMsg.from_wire(message.response)
    if response.error is not None:
        code = CODE_NAMES.index(response.error.code) if response.error.code in CODE_NAMES else 1
        return InferenceResponse(error=TritonError(response.error.message, code))
    tensors = []
    for desc in response.outputs:
        data = frame.tensor_bytes(desc[T_WHERE], desc[T_OFFSET], desc[T_NBYTES])
        array = array_from_wire(desc[T_DATATYPE], desc[T_SHAPE], data)
        tensors.append(Tensor._wrap(desc[T_NAME], array, WIRE_TO_TYPE[desc[T_DATATYPE]]))
    return InferenceResponse(tensors, parameters=_parameters(response.parameters))


def _parameters(text: str) -> dict[str, Any] | None:
    value = json.loads(text) if text else None
    return value if isinstance(value, dict) and value else None


class ResponseIterator:
    """The responses of a decoupled BLS call (Triton's ``ResponseIterator``).

    Iterate with ``for`` (blocking) or ``async for``; a final flag that came without a
    response is yielded as an empty response, as Triton does.
    """

    def __init__(self, client: BlsClient, call: _Call) -> None:
        self._client = client
        self._call = call
        self._finished = False

    def __iter__(self) -> Iterator[InferenceResponse]:
        return self

    def __next__(self) -> InferenceResponse:
        if self._finished:
            raise StopIteration
        message, frame = self._client.next_blocking(self._call)
        self._finished = message.final
        return to_response(message, frame)

    def __aiter__(self) -> AsyncIterator[InferenceResponse]:
        return self

    async def __anext__(self) -> InferenceResponse:
        if self._finished:
            raise StopAsyncIteration
        message, frame = await self._client.next_async(self._call)
        self._finished = message.final
        return to_response(message, frame)

    def cancel(self) -> None:
        """Triton's ``ResponseIterator.cancel``: not propagated yet; stop iterating."""
        self._finished = True


# The worker's client, set once the instance is initialized.
client: BlsClient | None = None


def _client() -> BlsClient:
    if client is None:
        raise TritonModelException("BLS calls are only possible after the model is initialized")
    return client


def execute(request: InferenceRequest, decoupled: bool) -> Any:
    bls = _client()
    call = bls.start_infer(request, decoupled)
    if decoupled:
        return ResponseIterator(bls, call)
    return to_response(*bls.next_blocking(call))


async def execute_async(request: InferenceRequest, decoupled: bool) -> Any:
    bls = _client()
    call = bls.start_infer(request, decoupled)
    if decoupled:
        return ResponseIterator(bls, call)
    return to_response(*await bls.next_async(call))


def control(op: str, model_name: str, **fields: Any) -> BlsResponseMsg:
    """Load / unload / readiness (blocking); raises TritonModelException on an error."""
    bls = _client()
    if "files" in fields:
        fields["files"] = {
            name: base64.b64encode(bytes(data)).decode() for name, data in fields["files"].items()
        }
    message, _frame = bls.next_blocking(
        bls.start(BlsRequestMsg(op=op, model_name=model_name, **fields))
    )
    if message.response is not None:
        error = ResponseMsg.from_wire(message.response).error
        if error is not None:
            raise TritonModelException(error.message)
    return message
