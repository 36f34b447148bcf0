"""Server side of Business Logic Scripting: python models calling the server's models.

A worker sends a ``bls_request`` frame (an inference on any model, or a load, unload
or readiness question); the instance hands it here and it runs as a task on the
server's loop through the core service (``InferenceService.infer``, or ``infer_stream``
for a decoupled call), so a worker may have many calls in flight and models calling
each other never block the loop. Each answer goes back as a ``bls_response`` frame on
the same channel, tensors laid out as for ``execute`` (shared memory above the
threshold). Model errors are answers, not failures: the model sees ``has_error()``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import TYPE_CHECKING, Any

import orjson

from naiad.backends.python.runtime._naiad_pb.channel import Channel
from naiad.backends.python.runtime._naiad_pb.messages import (
    T_DATATYPE,
    T_NAME,
    T_NBYTES,
    T_OFFSET,
    T_SHAPE,
    T_WHERE,
    BlsRequestMsg,
    BlsResponseMsg,
    ErrorInfo,
    RequestMsg,
    ResponseMsg,
)
from naiad.backends.python.runtime._naiad_pb.wire import Frame, PayloadBuilder
from naiad.errors import InternalError, NaiadError
from naiad.inference import (
    InferenceRequest,
    InferenceResponse,
    InferInput,
    ParameterValue,
    RequestedOutput,
)
from naiad.tensors import DataType, array_from_bytes, array_to_wire_bytes

if TYPE_CHECKING:
    from naiad.core.service import InferenceService

logger = logging.getLogger("naiad.python")

# The server's service, set when the server starts (one service per process).
_service: InferenceService | None = None
FLAG_SEQUENCE_START = 1
FLAG_SEQUENCE_END = 2


def set_service(service: InferenceService | None) -> None:
    global _service
    _service = service


class BlsServer:
    """Runs the BLS calls of one instance's workers."""

    def __init__(self, shared_memory: bool, threshold: int) -> None:
        self._shared_memory = shared_memory
        self._threshold = threshold
        self._tasks: set[asyncio.Task[None]] = set()

    def handle(self, channel: Channel, frame: Frame) -> None:
        """On the loop: start the call of a ``bls_request`` frame."""
        message = BlsRequestMsg.from_header(frame.header)
        task = asyncio.get_running_loop().create_task(self._run(channel, message, frame))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, channel: Channel, message: BlsRequestMsg, frame: Frame) -> None:
        try:
            service = _service
            if service is None:
                raise InternalError("BLS is not available: the python model runs without a server")
            if message.op == "infer":
                request = decode_request(message, frame)
                if message.decoupled:
                    async for item in service.infer_stream(request):
                        if item.error is not None:
                            self._send_error(channel, message.call, item.error, item.final)
                        else:
                            response = None if item.empty else item.response
                            self._send(channel, message.call, response, item.final)
                    return
                self._send(channel, message.call, await service.infer(request), True)
            elif message.op == "load":
                files = {name: base64.b64decode(text) for name, text in message.files.items()}
                await service.load_model(message.model_name, message.config or None, files or None)
                self._send(channel, message.call, None, True)
            elif message.op == "unload":
                await service.unload_model(message.model_name, message.unload_dependents)
                self._send(channel, message.call, None, True)
            elif message.op == "ready":
                ready = service.model_ready(message.model_name, message.model_version)
                channel.send(BlsResponseMsg(message.call, None, True, ready).to_header())
            else:
                raise InternalError(f"unknown BLS operation '{message.op}'")
        except NaiadError as exc:
            self._send_error(channel, message.call, exc, True)
        except Exception as exc:  # a server bug: the model still gets an answer
            logger.exception("BLS call to model '%s' failed", message.model_name)
            self._send_error(channel, message.call, InternalError(str(exc)), True)

    def _send(
        self, channel: Channel, call: int, response: InferenceResponse | None, final: bool
    ) -> None:
        payload = PayloadBuilder(self._shared_memory, self._threshold)
        wire = None
        if response is not None:
            outputs = []
            for output in response.outputs:
                desc: list[Any] = [output.name, output.datatype.value, list(output.shape)]
                payload.add(array_to_wire_bytes(output.datatype, output.data), desc)
                outputs.append(desc)
            parameters = orjson.dumps(response.parameters).decode() if response.parameters else "{}"
            wire = ResponseMsg(outputs, None, parameters).to_wire()
        channel.send(BlsResponseMsg(call, wire, final).to_header(), payload)

    @staticmethod
    def _send_error(channel: Channel, call: int, error: NaiadError, final: bool) -> None:
        wire = ResponseMsg(error=ErrorInfo(error.code.name, error.message)).to_wire()
        channel.send(BlsResponseMsg(call, wire, final).to_header())


def decode_request(message: BlsRequestMsg, frame: Frame) -> InferenceRequest:
    """A core request from a model's ``pb_utils.InferenceRequest`` (views of the frame)."""
    raw = RequestMsg.from_wire(message.request or [])
    inputs = []
    for desc in raw.inputs:
        data = frame.tensor_bytes(desc[T_WHERE], desc[T_OFFSET], desc[T_NBYTES])
        datatype = DataType.from_wire(desc[T_DATATYPE])
        array = array_from_bytes(datatype, desc[T_SHAPE], data)
        inputs.append(InferInput(desc[T_NAME], datatype, tuple(desc[T_SHAPE]), array))
    parameters: dict[str, ParameterValue] = {}
    loaded = orjson.loads(raw.parameters) if raw.parameters else {}
    if isinstance(loaded, dict):
        parameters.update(loaded)
    # Triton's request fields become the core's parameters of the same meaning.
    if raw.correlation_id:
        parameters["sequence_id"] = raw.correlation_id
    if raw.flags & FLAG_SEQUENCE_START:
        parameters["sequence_start"] = True
    if raw.flags & FLAG_SEQUENCE_END:
        parameters["sequence_end"] = True
    if raw.timeout_us:
        parameters["timeout"] = raw.timeout_us
    return InferenceRequest(
        model_name=message.model_name,
        model_version=message.model_version,
        id=raw.id,
        inputs=inputs,
        outputs=[RequestedOutput(name) for name in raw.requested_outputs] or None,
        parameters=parameters,
    )
