"""The gRPC server interceptor that runs the access check before any servicer method.

Every RPC of ``inference.GRPCInferenceService`` and ``grpc.health.v1.Health`` is mapped
to Triton's restricted API group here, from the service descriptors, so a method with
no entry in the table is treated as inference (the strictest reading). A refused call
never deserializes its request: the denying handler takes the raw bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb

from naiad.security.access import AccessPolicy, Denial, DenialKind
from naiad.security.restrictions import ApiGroup
from naiad.security.tls import TlsFiles

_INFERENCE_SERVICE = "inference.GRPCInferenceService"
_HEALTH_SERVICE = "grpc.health.v1.Health"

# Triton's grpc_server.cc: which RestrictedCategory each RPC checks.
_RPC_GROUPS: dict[str, ApiGroup] = {
    "ServerLive": ApiGroup.HEALTH,
    "ServerReady": ApiGroup.HEALTH,
    "ModelReady": ApiGroup.HEALTH,
    "ServerMetadata": ApiGroup.METADATA,
    "ModelMetadata": ApiGroup.METADATA,
    "ModelInfer": ApiGroup.INFERENCE,
    "ModelStreamInfer": ApiGroup.INFERENCE,
    "ModelConfig": ApiGroup.MODEL_CONFIG,
    "ModelStatistics": ApiGroup.STATISTICS,
    "RepositoryIndex": ApiGroup.MODEL_REPOSITORY,
    "RepositoryModelLoad": ApiGroup.MODEL_REPOSITORY,
    "RepositoryModelUnload": ApiGroup.MODEL_REPOSITORY,
    "SystemSharedMemoryStatus": ApiGroup.SHARED_MEMORY,
    "SystemSharedMemoryRegister": ApiGroup.SHARED_MEMORY,
    "SystemSharedMemoryUnregister": ApiGroup.SHARED_MEMORY,
    "CudaSharedMemoryStatus": ApiGroup.SHARED_MEMORY,
    "CudaSharedMemoryRegister": ApiGroup.SHARED_MEMORY,
    "CudaSharedMemoryUnregister": ApiGroup.SHARED_MEMORY,
    "TraceSetting": ApiGroup.TRACE,
    "LogSettings": ApiGroup.LOGGING,
}
_PROBES = frozenset(
    {
        f"/{_INFERENCE_SERVICE}/ServerLive",
        f"/{_INFERENCE_SERVICE}/ServerReady",
        f"/{_HEALTH_SERVICE}/Check",
        f"/{_HEALTH_SERVICE}/Watch",
    }
)


def method_groups() -> dict[str, ApiGroup]:
    """Full method name -> group for every RPC of both services."""
    groups = {
        f"/{_INFERENCE_SERVICE}/{method.name}": _RPC_GROUPS.get(method.name, ApiGroup.INFERENCE)
        for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    }
    groups[f"/{_HEALTH_SERVICE}/Check"] = ApiGroup.HEALTH
    groups[f"/{_HEALTH_SERVICE}/Watch"] = ApiGroup.HEALTH
    return groups


_STATUS = {
    DenialKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    DenialKind.RESTRICTED: grpc.StatusCode.PERMISSION_DENIED,
}


def _denying_handler(handler: grpc.RpcMethodHandler, denial: Denial) -> grpc.RpcMethodHandler:
    code = _STATUS[denial.kind]

    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, denial.message)

    # Same streaming kind as the real method; no deserializer, so nothing is parsed.
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class AccessInterceptor(grpc.aio.ServerInterceptor):
    """Applies an :class:`AccessPolicy` to every call, by the method's group."""

    def __init__(self, policy: AccessPolicy) -> None:
        self._policy = policy
        self._groups = method_groups()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        metadata = tuple(handler_call_details.invocation_metadata or ())

        def values(name: str) -> list[str]:
            return [
                v if isinstance(v, str) else v.decode("latin-1") for k, v in metadata if k == name
            ]

        # An unknown method still needs credentials; gRPC then answers UNIMPLEMENTED.
        group = self._groups.get(method, ApiGroup.INFERENCE)
        denial = self._policy.check(group, values, method in _PROBES)
        handler = await continuation(handler_call_details)
        if denial is None or handler is None:
            return handler
        return _denying_handler(handler, denial)


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Credentials for ``add_secure_port``; with a client CA, clients must present a
    certificate it signed."""
    cert, key, client_ca = tls.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
