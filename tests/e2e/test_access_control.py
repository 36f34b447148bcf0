"""Restricted API groups, bearer tokens, CORS and TLS/mTLS against real server processes.

Every restricted group is refused without its header and allowed with it, over HTTP
(403, Triton's message) and gRPC (PERMISSION_DENIED); a bearer token guards every
route but the probes; TLS and mutual TLS work with ``tritonclient``'s own options.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from naiad.examples import onnx_models
from tests.certs import CertFiles, CertificateAuthority
from tests.repository import simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

TOKEN = "naiad-test-token-0123456789abcdef"
USER = ("user-key", "user-value")
ADMIN = ("admin-key", "admin-value")
USER_GROUPS = "health,metadata,inference,shared-memory"
ADMIN_GROUPS = "model-config,model-repository,statistics,trace,logging"
ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("access_repository")
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    return root


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    token_file = tmp_path_factory.mktemp("token") / "tokens"
    token_file.write_text(f"# test token\n{TOKEN}\n")
    args = [
        f"--http-restricted-api={USER_GROUPS}:{USER[0]}={USER[1]}",
        f"--http-restricted-api={ADMIN_GROUPS}:{ADMIN[0]}={ADMIN[1]}",
        f"--grpc-restricted-protocol={USER_GROUPS}:{USER[0]}={USER[1]}",
        f"--grpc-restricted-protocol={ADMIN_GROUPS}:{ADMIN[0]}={ADMIN[1]}",
        f"--auth-token-file={token_file}",
        f"--http-cors-origin={ALLOWED_ORIGIN}",
    ]
    with ServerProcess([repository], *args, live_headers=dict([USER])) as process:
        yield process


def _request(
    server: ServerProcess, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(server.http_url, timeout=30)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


_INFER = json.dumps(
    {
        "inputs": [
            {"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
            for n in ("INPUT0", "INPUT1")
        ]
    }
).encode()

# One route per group, with the restriction that guards it.
HTTP_ROUTES: list[tuple[str, str, str, bytes, tuple[str, str]]] = [
    ("health", "GET", "/v2/health/ready", b"", USER),
    ("health", "GET", "/v2/models/simple/ready", b"", USER),
    ("metadata", "GET", "/v2", b"", USER),
    ("metadata", "GET", "/v2/models/simple", b"", USER),
    ("inference", "POST", "/v2/models/simple/infer", _INFER, USER),
    ("shared-memory", "GET", "/v2/systemsharedmemory/status", b"", USER),
    ("shared-memory", "POST", "/v2/cudasharedmemory/unregister", b"", USER),
    ("model-config", "GET", "/v2/models/simple/config", b"", ADMIN),
    ("model-repository", "POST", "/v2/repository/index", b"", ADMIN),
    ("statistics", "GET", "/v2/models/stats", b"", ADMIN),
    ("trace", "GET", "/v2/trace/setting", b"", ADMIN),
    ("logging", "GET", "/v2/logging", b"", ADMIN),
]


@pytest.mark.parametrize(("group", "method", "path", "body", "restriction"), HTTP_ROUTES)
def test_http_groups_need_their_header(
    server: ServerProcess,
    group: str,
    method: str,
    path: str,
    body: bytes,
    restriction: tuple[str, str],
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, _, payload = _request(server, method, path, auth, body)
    assert status == 403, (group, payload)
    assert json.loads(payload) == {
        "error": f"This API is restricted, expecting header '{restriction[0]}'"
    }
    wrong = {**auth, restriction[0]: restriction[1] + "x"}
    assert _request(server, method, path, wrong, body)[0] == 403
    other = ADMIN if restriction is USER else USER
    assert _request(server, method, path, {**auth, other[0]: other[1]}, body)[0] == 403
    status, _, payload = _request(
        server, method, path, {**auth, restriction[0]: restriction[1]}, body
    )
    assert status not in (401, 403), (group, payload)


def test_http_token_guards_everything_but_probes(server: ServerProcess) -> None:
    user = {USER[0]: USER[1]}
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert _request(server, "GET", path, user)[0] == 200
    for headers in (user, {**user, "Authorization": "Bearer wrong-token-000000000000"}):
        status, response_headers, payload = _request(server, "GET", "/v2/models/simple", headers)
        assert status == 401
        assert response_headers["www-authenticate"] == "Bearer"
        assert TOKEN not in payload.decode()
    # Unknown paths need the token too (no oracle for which routes exist).
    assert _request(server, "GET", "/nowhere", {})[0] == 401


def test_tritonclient_http_with_headers(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    user = {"Authorization": f"Bearer {TOKEN}", USER[0]: USER[1]}
    admin = {"Authorization": f"Bearer {TOKEN}", ADMIN[0]: ADMIN[1]}
    assert client.is_server_ready(headers=user)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    result = client.infer("simple", inputs, headers=user)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a * 2)
    assert client.get_model_config("simple", headers=admin)["name"] == "simple"
    with pytest.raises(InferenceServerException, match="expecting header 'admin-key'"):
        client.get_model_config("simple", headers=user)


def _grpc_calls() -> list[
    tuple[str, Callable[[grpcclient.InferenceServerClient, dict[str, str]], Any], tuple[str, str]]
]:
    def infer(client: grpcclient.InferenceServerClient, headers: dict[str, str]) -> Any:
        inputs = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
        for tensor in inputs:
            tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
        return client.infer("simple", inputs, headers=headers)

    return [
        ("health", lambda c, h: c.is_server_ready(headers=h), USER),
        ("health-model", lambda c, h: c.is_model_ready("simple", headers=h), USER),
        ("metadata", lambda c, h: c.get_server_metadata(headers=h), USER),
        ("metadata", lambda c, h: c.get_model_metadata("simple", headers=h), USER),
        ("inference", infer, USER),
        ("shared-memory", lambda c, h: c.get_system_shared_memory_status(headers=h), USER),
        ("model-config", lambda c, h: c.get_model_config("simple", headers=h), ADMIN),
        ("model-repository", lambda c, h: c.get_model_repository_index(headers=h), ADMIN),
        ("statistics", lambda c, h: c.get_inference_statistics(headers=h), ADMIN),
        ("trace", lambda c, h: c.get_trace_settings(headers=h), ADMIN),
        ("logging", lambda c, h: c.get_log_settings(headers=h), ADMIN),
    ]


@pytest.mark.parametrize(("group", "call", "restriction"), _grpc_calls())
def test_grpc_groups_need_their_metadata(
    server: ServerProcess,
    group: str,
    call: Callable[[grpcclient.InferenceServerClient, dict[str, str]], Any],
    restriction: tuple[str, str],
) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    auth = {"authorization": f"Bearer {TOKEN}"}
    header = f"triton-grpc-protocol-{restriction[0]}"
    with pytest.raises(InferenceServerException) as error:
        call(client, auth)
    assert error.value.status() == "StatusCode.PERMISSION_DENIED", group
    assert error.value.message() == f"This protocol is restricted, expecting header '{header}'"
    with pytest.raises(InferenceServerException) as error:
        call(client, {**auth, header: restriction[1] + "x"})
    assert error.value.status() == "StatusCode.PERMISSION_DENIED"
    try:
        call(client, {**auth, header: restriction[1]})
    except InferenceServerException as exc:  # allowed through; may be unimplemented
        assert exc.status() not in ("StatusCode.PERMISSION_DENIED", "StatusCode.UNAUTHENTICATED")
    if group != "health":  # probes need no token; everything else does
        with pytest.raises(InferenceServerException) as error:
            call(client, {header: restriction[1]})
        assert error.value.status() == "StatusCode.UNAUTHENTICATED"


def test_grpc_token(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    user = {f"triton-grpc-protocol-{USER[0]}": USER[1]}
    # Probes need no token (their health restriction still applies).
    assert client.is_server_live(headers=user)
    with pytest.raises(InferenceServerException) as error:
        client.get_server_metadata(headers=user)
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    assert TOKEN not in error.value.message()
    assert client.get_server_metadata(headers={**user, "authorization": f"Bearer {TOKEN}"})


def test_cors_and_foreign_origins(server: ServerProcess) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", USER[0]: USER[1]}
    status, headers, _ = _request(
        server,
        "OPTIONS",
        "/v2/models/simple/infer",
        {
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, user-key",
        },
    )
    assert status == 204
    assert headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "user-key" in headers["access-control-allow-headers"]
    status, headers, _ = _request(server, "GET", "/v2", {**auth, "Origin": ALLOWED_ORIGIN})
    assert status == 200 and headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    # A page elsewhere cannot drive the server, even with a "simple" request.
    for origin in ("https://evil.example", "null"):
        status, headers, _ = _request(
            server, "POST", "/v2/repository/index", {**auth, "Origin": origin}
        )
        assert status == 403
        assert "access-control-allow-origin" not in headers


def test_bad_restriction_flags_stop_the_server(repository: Path) -> None:
    for flag, message in (
        (
            "--http-restricted-api=model-reposit,health:k=v",
            "unknown restricted api 'model-reposit'",
        ),
        ("--grpc-restricted-protocol=health:k", "must have the form"),
        ("--auth-token-file=/nonexistent/tokens", "unable to read the auth token file"),
        ("--tls-cert=/nonexistent/cert.pem", "TLS needs both --tls-cert and --tls-key"),
    ):
        process = ServerProcess([repository], flag).start(wait_ready=False)
        assert process.wait_exit(60) == 1
        assert message in process.log


# -- TLS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory)
    rogue = CertificateAuthority(directory, "rogue-ca")
    return {
        "ca": ca.files,
        "server": ca.issue("server", server=True),
        "client": ca.issue("client", server=False),
        "rogue_client": rogue.issue("rogue", server=False),
    }


def _wait_tls(process: ServerProcess, context: ssl.SSLContext, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.process is not None and process.process.poll() is None, process.log
        if process.http_port and process.grpc_port:
            connection = http.client.HTTPSConnection(process.http_url, context=context, timeout=5)
            try:
                connection.request("GET", "/v2/health/live")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                connection.close()
        time.sleep(0.1)
    raise TimeoutError(process.log)


@pytest.fixture(scope="module")
def tls_server(repository: Path, pki: dict[str, Any]) -> Iterator[ServerProcess]:
    server_files: CertFiles = pki["server"]
    args = [
        # HTTP: Naiad's flags, mutual TLS.
        f"--tls-cert={server_files.cert}",
        f"--tls-key={server_files.key}",
        f"--tls-client-ca={pki['ca'].cert}",
        # gRPC: Triton's own flags, mutual TLS.
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={server_files.cert}",
        f"--grpc-server-key={server_files.key}",
        f"--grpc-root-cert={pki['ca'].cert}",
        "--grpc-use-ssl-mutual=true",
    ]
    process = ServerProcess([repository], *args).start(wait_ready=False)
    context = ssl.create_default_context(cafile=str(pki["ca"].cert))
    context.load_cert_chain(str(pki["client"].cert), str(pki["client"].key))
    try:
        _wait_tls(process, context)
        yield process
    finally:
        process.stop()


def test_https_with_client_certificate(tls_server: ServerProcess, pki: dict[str, Any]) -> None:
    options = {
        "ca_certs": str(pki["ca"].cert),
        "certfile": str(pki["client"].cert),
        "keyfile": str(pki["client"].key),
    }
    client = httpclient.InferenceServerClient(tls_server.http_url, ssl=True, ssl_options=options)
    assert client.is_server_ready()
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a * 2)
    client.close()


@pytest.mark.parametrize("who", ["none", "rogue_client", "plaintext"])
def test_https_refuses_clients_without_a_trusted_certificate(
    tls_server: ServerProcess, pki: dict[str, Any], who: str
) -> None:
    if who == "plaintext":
        connection: http.client.HTTPConnection = http.client.HTTPConnection(
            tls_server.http_url, timeout=5
        )
    else:
        context = ssl.create_default_context(cafile=str(pki["ca"].cert))
        if who != "none":
            context.load_cert_chain(str(pki[who].cert), str(pki[who].key))
        connection = http.client.HTTPSConnection(tls_server.http_url, context=context, timeout=5)
    with pytest.raises((OSError, http.client.HTTPException)):
        connection.request("GET", "/v2/health/live")
        connection.getresponse().read()
    connection.close()


def test_grpc_mutual_tls_with_tritons_flags(tls_server: ServerProcess, pki: dict[str, Any]) -> None:
    client = grpcclient.InferenceServerClient(
        tls_server.grpc_url,
        ssl=True,
        root_certificates=str(pki["ca"].cert),
        private_key=str(pki["client"].key),
        certificate_chain=str(pki["client"].cert),
    )
    assert client.is_server_ready()
    inputs = [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    assert client.infer("simple", inputs).as_numpy("OUTPUT0").sum() == 32
    client.close()
    for key, chain in ((None, None), (pki["rogue_client"].key, pki["rogue_client"].cert)):
        anonymous = grpcclient.InferenceServerClient(
            tls_server.grpc_url,
            ssl=True,
            root_certificates=str(pki["ca"].cert),
            private_key=str(key) if key else None,
            certificate_chain=str(chain) if chain else None,
        )
        with pytest.raises(InferenceServerException):
            anonymous.is_server_live(client_timeout=5)
        anonymous.close()
