"""Triton's ``inference.GRPCInferenceService`` and ``grpc.health.v1.Health`` on ``grpc.aio``.

The servicers only translate: each RPC calls :class:`InferenceService` and turns the
result, or the :class:`NaiadError` raised, into the protobuf reply or a gRPC status.
RPCs Naiad does not serve answer UNIMPLEMENTED with a message, except the shared memory
status/unregister calls that clients make before anything else (they succeed, empty).
The handlers are registered like ``add_GRPCInferenceServiceServicer_to_server`` does,
except that ModelInfer uses the zero-copy (de)serializers of :mod:`.wire`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from naiad.core.service import InferenceService
from naiad.errors import NaiadError, NotFoundError, UnsupportedError
from naiad.frontends.grpc.codec import (
    decode_infer_request,
    decode_load_parameters,
    encode_infer_response,
)
from naiad.frontends.grpc.errors import abort_with, reporting_errors
from naiad.frontends.grpc.observability_rpcs import (
    finish_trace,
    log_settings,
    start_trace,
    trace_setting,
)
from naiad.frontends.grpc.stream import StreamSession
from naiad.frontends.grpc.wire import (
    InferRequestMessage,
    InferResponseMessage,
    parse_infer_request,
    serialize_infer_response,
)
from naiad.frontends.statistics import statistics_message

if TYPE_CHECKING:
    from naiad.observability.runtime import Observability


def _unsupported(rpc: str, reason: str) -> Any:
    """A servicer method that answers UNIMPLEMENTED for an RPC Naiad does not serve."""

    async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext) -> None:
        await abort_with(context, UnsupportedError(f"{rpc} is not supported by Naiad: {reason}"))

    handler.__name__ = rpc
    return handler


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """``inference.GRPCInferenceService`` over an :class:`InferenceService`."""

    def __init__(
        self, service: InferenceService, observability: Observability | None = None
    ) -> None:
        self._service = service
        # Tracer and log settings; None answers TraceSetting/LogSettings UNIMPLEMENTED.
        self._observability = observability

    # -- health and metadata ---------------------------------------------------------

    @reporting_errors
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._service.server_live())

    @reporting_errors
    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._service.server_ready())

    @reporting_errors
    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        # An unknown model is "not ready", not an error (as Triton answers).
        return pb.ModelReadyResponse(ready=self._service.model_ready(request.name, request.version))

    @reporting_errors
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        metadata = self._service.server_metadata()
        return pb.ServerMetadataResponse(
            name=metadata.name, version=metadata.version, extensions=metadata.extensions
        )

    @reporting_errors
    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        metadata = self._service.model_metadata(request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata.name,
            versions=metadata.versions,
            platform=metadata.platform,
            inputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.inputs
            ],
            outputs=[
                tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in metadata.outputs
            ],
        )

    @reporting_errors
    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        # The constructor copies the config, so the model's own message is never shared.
        return pb.ModelConfigResponse(
            config=self._service.model_config(request.name, request.version)
        )

    # -- inference -------------------------------------------------------------------

    @reporting_errors
    async def ModelInfer(
        self, request: InferRequestMessage, context: grpc.aio.ServicerContext
    ) -> InferResponseMessage:
        # Registered with the zero-copy (de)serializers of ``wire``, not protobuf's.
        message = request.message
        # Triton resolves the model before it reads any tensor, so an unknown model or
        # version is reported as such even when the tensors are malformed too.
        config = self._service.model_config(message.model_name, message.model_version)
        if config.model_transaction_policy.decoupled:
            raise UnsupportedError(
                "ModelInfer RPC doesn't support models with decoupled transaction policy"
            )
        trace = start_trace(self._observability, context, message.model_name)
        try:
            # The session holds the shared memory regions the request names until its
            # outputs are written (an unregister meanwhile waits for it).
            with self._service.shared_memory.session() as shm:
                try:
                    decoded = decode_infer_request(message, request.raw_input_contents, shm)
                except NaiadError:
                    # Refused before reaching the model, it still counts as its failure.
                    self._service.record_rejected(message.model_name, message.model_version)
                    raise
                response = await self._service.infer(decoded)
                if trace is not None:
                    trace.stamp("GRPC_SEND_START")
                return encode_infer_response(response, shm)
        finally:
            finish_trace(trace)

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # Bidirectional: requests run concurrently, errors come back in the stream.
        async for response in StreamSession(self._service).run(request_iterator, context):
            yield response

    @reporting_errors
    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        return statistics_message(self._service.model_statistics(request.name, request.version))

    @reporting_errors
    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        if request.repository_name:
            raise UnsupportedError("'repository_name' specification is not supported")
        entries = await self._service.repository_index(request.ready)
        return pb.RepositoryIndexResponse(
            models=[
                pb.RepositoryIndexResponse.ModelIndex(
                    name=e.name, version=e.version, state=e.state, reason=e.reason
                )
                for e in entries
            ]
        )

    @reporting_errors
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        if request.repository_name:
            raise UnsupportedError("'repository_name' specification is not supported")
        config, files = decode_load_parameters(request.parameters)
        await self._service.load_model(request.model_name, config, files)
        return pb.RepositoryModelLoadResponse()

    @reporting_errors
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        if request.repository_name:
            raise UnsupportedError("'repository_name' specification is not supported")
        parameter = request.parameters.get("unload_dependents")
        dependents = parameter is not None and parameter.bool_param
        await self._service.unload_model(request.model_name, dependents)
        return pb.RepositoryModelUnloadResponse()

    @reporting_errors
    async def TraceSetting(
        self, request: pb.TraceSettingRequest, context: grpc.aio.ServicerContext
    ) -> pb.TraceSettingResponse:
        return trace_setting(self._observability, self._service, request)

    @reporting_errors
    async def LogSettings(
        self, request: pb.LogSettingsRequest, context: grpc.aio.ServicerContext
    ) -> pb.LogSettingsResponse:
        return log_settings(self._observability, request)

    # -- shared memory: the registry is the core's, shared with HTTP ----------------
    # CUDA shared memory needs a GPU: registering answers UNIMPLEMENTED, while status
    # and unregister succeed, because clients call them before anything else.

    @reporting_errors
    async def SystemSharedMemoryRegister(
        self, request: pb.SystemSharedMemoryRegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.SystemSharedMemoryRegisterResponse:
        self._service.shared_memory.register(
            request.name, request.key, request.offset, request.byte_size
        )
        return pb.SystemSharedMemoryRegisterResponse()

    @reporting_errors
    async def SystemSharedMemoryStatus(
        self, request: pb.SystemSharedMemoryStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.SystemSharedMemoryStatusResponse:
        response = pb.SystemSharedMemoryStatusResponse()
        for status in self._service.shared_memory.status(request.name):
            response.regions[status.name].CopyFrom(
                pb.SystemSharedMemoryStatusResponse.RegionStatus(
                    name=status.name, key=status.key, offset=status.offset,
                    byte_size=status.byte_size,
                )
            )  # fmt: skip
        return response

    @reporting_errors
    async def SystemSharedMemoryUnregister(
        self, request: pb.SystemSharedMemoryUnregisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.SystemSharedMemoryUnregisterResponse:
        self._service.shared_memory.unregister(request.name)
        return pb.SystemSharedMemoryUnregisterResponse()

    @reporting_errors
    async def CudaSharedMemoryRegister(
        self, request: pb.CudaSharedMemoryRegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.CudaSharedMemoryRegisterResponse:
        raise UnsupportedError(
            f"failed to register CUDA shared memory region: '{request.name[:128]}', "
            "GPUs not supported"
        )

    @reporting_errors
    async def CudaSharedMemoryStatus(
        self, request: pb.CudaSharedMemoryStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.CudaSharedMemoryStatusResponse:
        if request.name:
            raise NotFoundError(f"Unable to find cuda shared memory region: '{request.name}'")
        return pb.CudaSharedMemoryStatusResponse()

    @reporting_errors
    async def CudaSharedMemoryUnregister(
        self, request: pb.CudaSharedMemoryUnregisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.CudaSharedMemoryUnregisterResponse:
        return pb.CudaSharedMemoryUnregisterResponse()


class HealthServicer(health_pb2_grpc.HealthServicer):
    """``grpc.health.v1.Health``: SERVING exactly when the server is ready.

    Like Triton, the answer is for the whole server whatever service name is asked.
    """

    def __init__(self, service: InferenceService) -> None:
        self._service = service

    @reporting_errors
    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self._service.server_ready()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        return health_pb2.HealthCheckResponse(status=status)

    Watch = _unsupported("Watch", "poll grpc.health.v1.Health/Check instead")


_SERVICE_NAME = "inference.GRPCInferenceService"
_HEALTH_SERVICE_NAME = "grpc.health.v1.Health"
_HANDLER_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def _service_handlers(
    servicer: Any, messages: Any, service: str
) -> dict[str, grpc.RpcMethodHandler]:
    """One handler per RPC of ``service`` (as in the ``messages`` module's descriptor),
    with the protobuf (de)serializers the generated code gives it."""
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in messages.DESCRIPTOR.services_by_name[service].methods:
        request_type = getattr(messages, method.input_type.name)
        response_type = getattr(messages, method.output_type.name)
        factory = _HANDLER_FACTORIES[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    return handlers


def _inference_handlers(servicer: InferenceServicer) -> dict[str, grpc.RpcMethodHandler]:
    """What ``add_GRPCInferenceServiceServicer_to_server`` registers, but ModelInfer
    (de)serializes with :mod:`wire` so tensor bytes skip protobuf's copies.

    Built from the service descriptor, so every RPC of the proto gets a handler.
    """
    handlers = _service_handlers(servicer, pb, "GRPCInferenceService")
    handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(
        servicer.ModelInfer,
        request_deserializer=parse_infer_request,
        response_serializer=serialize_infer_response,
    )
    return handlers


def add_grpc_services(
    server: grpc.aio.Server,
    service: InferenceService,
    observability: Observability | None = None,
) -> None:
    """Register the inference and health services on ``server`` (before it starts).

    Both go in as generic handlers only, unlike the generated ``add_*_to_server``, which
    also registers every method with gRPC's core: for each registered method grpc.aio
    keeps a pending request-call future and ``asyncio.wait``s on all of them whenever
    any RPC arrives, so the 22 methods cost about 17 us of event loop time per call
    (against one future here). The lookup in a generic handler is a dict get.
    """
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                _SERVICE_NAME, _inference_handlers(InferenceServicer(service, observability))
            ),
            grpc.method_handlers_generic_handler(
                _HEALTH_SERVICE_NAME,
                _service_handlers(HealthServicer(service), health_pb2, "Health"),
            ),
        )
    )
