"""``ModelStreamInfer``: Triton's bidirectional streaming inference RPC.

Every request read from the stream runs concurrently with the others; their responses
are written in the order they are produced. Requests of one sequence still reach the
sequence batcher in arrival order: tasks start in creation order and nothing between
reading a request and the scheduler's enqueue awaits (keep it so, or order per sequence
here; tests/e2e/test_sequence_stream.py fails otherwise). Each streamed response carries the
``triton_final_response`` parameter; a flag-only final (a decoupled model closing a
request without a response) is sent as an empty response only when the request asked
for it (``triton_enable_empty_final_response``). A failed request answers with
``error_message`` and the stream stays open, as in Triton.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from tritonclient.grpc import service_pb2 as pb

from naiad.core.service import InferenceService
from naiad.core.shared_memory import SharedMemorySession
from naiad.core.streaming import StreamItem
from naiad.errors import NaiadError
from naiad.frontends.grpc.codec import decode_infer_request, encode_infer_response

logger = logging.getLogger("naiad.frontends.grpc")

EMPTY_FINAL_PARAMETER = "triton_enable_empty_final_response"
FINAL_PARAMETER = "triton_final_response"
_END = None


class StreamSession:
    """One ``ModelStreamInfer`` call: reads requests, runs each as a task, merges replies."""

    def __init__(self, service: InferenceService) -> None:
        self._service = service
        self._out: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        # The reader plus every request still running; the stream ends at zero.
        self._open = 1

    async def run(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                response = await self._out.get()
                if response is None:  # _END
                    return
                yield response
        finally:
            # The client went away (or the stream ended): stop what is still running.
            reader.cancel()
            for task in list(self._tasks):
                task.cancel()

    async def _read(self, requests: AsyncIterator[pb.ModelInferRequest]) -> None:
        try:
            async for message in requests:
                self._open += 1
                task = asyncio.create_task(self._infer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            self._close_one()

    def _close_one(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._out.put_nowait(_END)

    async def _infer(self, message: pb.ModelInferRequest) -> None:
        try:
            with self._service.shared_memory.session() as shm:
                try:
                    request = decode_infer_request(message, None, shm)
                except NaiadError:
                    self._service.record_rejected(message.model_name, message.model_version)
                    raise
                empty_final = bool(request.parameters.get(EMPTY_FINAL_PARAMETER, False))
                async for item in self._service.infer_stream(request):
                    reply = self._encode(item, empty_final, shm)
                    if reply is not None:
                        self._out.put_nowait(reply)
        except NaiadError as exc:
            self._out.put_nowait(pb.ModelStreamInferResponse(error_message=exc.message))
        except Exception as exc:  # a bug: keep the stream (and the server) going
            logger.exception("unexpected error in gRPC ModelStreamInfer")
            self._out.put_nowait(
                pb.ModelStreamInferResponse(
                    error_message=f"internal error: {type(exc).__name__}: {exc}"
                )
            )
        finally:
            self._close_one()

    @staticmethod
    def _encode(
        item: StreamItem, empty_final: bool, shm: SharedMemorySession
    ) -> pb.ModelStreamInferResponse | None:
        if item.error is not None:
            return pb.ModelStreamInferResponse(error_message=item.error.message)
        if item.response is None or (item.empty and not empty_final):
            return None
        encoded = encode_infer_response(item.response, shm)
        message = encoded.message
        message.raw_output_contents.extend(bytes(blob) for blob in encoded.raw_output_contents)
        message.parameters[FINAL_PARAMETER].bool_param = item.final
        return pb.ModelStreamInferResponse(infer_response=message)
