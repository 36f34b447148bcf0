"""What a server started with no security flags allows: loopback only, no model control,
no client shared memory, no file paths over the network."""

from __future__ import annotations

import http.client
import ipaddress
import json

import psutil
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e


def _post(server: ServerProcess, path: str, body: dict[str, object]) -> tuple[int, str]:
    connection = http.client.HTTPConnection(server.http_url, timeout=30)
    try:
        connection.request("POST", path, body=json.dumps(body))
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_listeners_are_loopback_only(server: ServerProcess) -> None:
    assert server.process is not None
    listening = [
        c.laddr
        for c in psutil.Process(server.process.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert len(listening) >= 2
    assert all(_loopback(address.ip) for address in listening), listening


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    # gRPC listens on an IPv6 socket with the IPv4-mapped form of 127.0.0.1.
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_model_control_and_client_shared_memory_are_off(server: ServerProcess) -> None:
    status, text = _post(server, "/v2/repository/models/simple/load", {})
    assert status >= 400, text
    status, text = _post(
        server, "/v2/systemsharedmemory/region/r/register", {"key": "/x", "byte_size": 8}
    )
    assert status == 501
    assert "--allow-client-shm=true" in json.loads(text)["error"]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with pytest.raises(InferenceServerException) as error:
        client.load_model("simple")
    assert error.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.UNIMPLEMENTED")
    metadata = client.get_server_metadata()
    assert "system_shared_memory" not in metadata.extensions
    client.close()


@pytest.mark.parametrize(
    ("path", "key"), [("/v2/logging", "log_file"), ("/v2/trace/setting", "trace_file")]
)
def test_no_file_path_is_settable_over_the_network(
    server: ServerProcess, path: str, key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    target = tmp_path_factory.mktemp("paths") / "moved.log"
    status, text = _post(server, path, {key: str(target)})
    assert status in (400, 501), text
    assert "can not be updated through network protocol" in json.loads(text)["error"]
    assert not target.exists()
