"""The gRPC servicers in process, on both asyncio's loop and uvloop (what the CLI runs).

A real ``grpc.aio`` server on an ephemeral loopback port over a real (empty)
:class:`InferenceService`, so readiness can be driven through start-up and shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from naiad.backends.registry import BackendRegistry
from naiad.core.loader import LoaderSettings, ModelLoader
from naiad.core.manager import ModelManager
from naiad.core.service import InferenceService
from naiad.frontends.grpc.errors import reporting_errors
from naiad.frontends.grpc.server import InferenceServicer, add_grpc_services

Scenario = Callable[[InferenceService, grpc.aio.Channel], Awaitable[None]]
RUNNERS: dict[str, Callable[[Any], Any]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


def _service() -> InferenceService:
    loader = ModelLoader(BackendRegistry(), LoaderSettings())
    return InferenceService(ModelManager([], loader))


async def _serve(scenario: Scenario, servicer: InferenceServicer | None = None) -> None:
    service = _service()
    server = grpc.aio.server()
    if servicer is None:
        add_grpc_services(server, service)
    else:
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await scenario(service, channel)
    finally:
        await server.stop(grace=None)


async def _readiness(service: InferenceService, channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

    async def check() -> tuple[int, bool]:
        reply = await health.Check(health_pb2.HealthCheckRequest())
        ready = await stub.ServerReady(pb.ServerReadyRequest())
        return reply.status, ready.ready

    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert await check() == (not_serving, False)
    service.mark_started()
    assert await check() == (health_pb2.HealthCheckResponse.SERVING, True)
    service.begin_shutdown()
    assert await check() == (not_serving, False)
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live


@pytest.mark.parametrize("loop", list(RUNNERS))
def test_readiness_follows_the_service(loop: str) -> None:
    RUNNERS[loop](_serve(_readiness))


async def _errors(service: InferenceService, channel: grpc.aio.Channel) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ModelInfer(pb.ModelInferRequest(model_name="x"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "Request for unknown model: 'x' is not found"
    ready = await stub.ModelReady(pb.ModelReadyRequest(name="x"))
    assert not ready.ready
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest()).read()
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.parametrize("loop", list(RUNNERS))
def test_errors_become_statuses(loop: str) -> None:
    RUNNERS[loop](_serve(_errors))


class _BrokenServicer(InferenceServicer):
    """A handler with a bug: the failure must reach the client as INTERNAL."""

    @reporting_errors
    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        raise RuntimeError("boom")


async def _internal(service: InferenceService, channel: grpc.aio.Channel) -> None:
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.ServerLive(pb.ServerLiveRequest())
    assert error.value.code() == grpc.StatusCode.INTERNAL
    assert error.value.details() == "internal error in ServerLive: RuntimeError: boom"
    # The server goes on answering.
    assert not (await stub.ServerReady(pb.ServerReadyRequest())).ready


def test_unexpected_exception_is_internal() -> None:
    asyncio.run(_serve(_internal, _BrokenServicer(_service())))
