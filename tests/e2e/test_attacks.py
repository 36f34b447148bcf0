"""Every past attack on a peer inference server, sent to a real Naiad process.

Each case is one class from ``security-incidents.md`` with the input that detects it.
Each must get a clear error, leave the server serving, create no file, and, looped,
keep the server's memory flat.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException

from naiad.examples import onnx_models
from tests.repository import simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

RUN = uuid.uuid4().hex[:8]
PWN = Path(f"/tmp/naiad-pwn-{RUN}")
INJECTED_NAMES = [
    f"a;touch {PWN}",
    f"$(touch {PWN})",
    f"`touch {PWN}`",
    f"a|touch {PWN}",
    f"a\nI0101 00:00:00 forged log line {RUN}",
]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attacks")


@pytest.fixture(scope="module")
def server(sandbox: Path) -> Iterator[ServerProcess]:
    root = sandbox / "repository"
    write_model(root, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    # A directory whose name is a shell command (a name cannot hold "/" on disk).
    (root / f"a;touch naiad-pwn-{RUN}" / "1").mkdir(parents=True)
    # A symlink in the repository that points out of it, for the override escape.
    (sandbox / "outside").mkdir()
    (root / "simple" / "escape").symlink_to(sandbox / "outside")
    args = [
        "--model-control-mode=explicit",
        "--load-model=simple",
        "--exit-on-error=false",
        "--allow-client-shm=true",
        "--shm-key-prefix=naiad_attack_",
    ]
    process = ServerProcess([root], *args)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _post(
    server: ServerProcess, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    connection = http.client.HTTPConnection(server.http_url, timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    response = b""
    while chunk := sock.recv(65536):
        response += chunk
    return response


def _assert_serving(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    assert client.is_server_live()
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    np.testing.assert_array_equal(client.infer("simple", inputs).as_numpy("OUTPUT0"), a * 2)
    client.close()


def _error(status: int, body: str, *codes: int) -> str:
    assert status in codes, (status, body)
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message
    return message


# -- the attacks, one function each (reused by the memory loop) -----------------------


def override_escapes(server: ServerProcess, sandbox: Path) -> None:
    """CVE-2023-31036: file: overrides with .., an absolute path and a symlinked parent."""
    victim = sandbox / "victim.txt"
    victim.write_text("unchanged")
    config = json.dumps({"backend": "onnxruntime", "max_batch_size": 0})
    payload = base64.b64encode(b"pwned").decode()
    for relative, expected in (
        ("../../victim.txt", "invalid override file path"),
        (f"1/../../../{sandbox.name}/victim.txt", "invalid override file path"),
        (str(victim), "invalid override file path"),
        ("1/" + "x" * 300, "longer than 255"),
        # "escape" is a symlink out of the repository's copy of the model: the override
        # directory is a fresh one, so the file lands there (and the load fails later).
        ("escape/pwned.txt", "failed to load"),
    ):
        body = json.dumps({"parameters": {"config": config, f"file:{relative}": payload}})
        status, text = _post(server, "/v2/repository/models/simple/load", body.encode())
        assert expected in _error(status, text, 400), relative
    assert victim.read_text() == "unchanged"
    assert not (sandbox / "outside" / "pwned.txt").exists()
    assert not any(sandbox.rglob("pwned.txt"))


def network_file_paths(server: ServerProcess, sandbox: Path) -> None:
    """CVE-2024-0087 / 0100: the log and trace files cannot be moved over the network."""
    target = sandbox / "repointed.log"
    for path, key in (("/v2/logging", "log_file"), ("/v2/trace/setting", "trace_file")):
        status, text = _post(server, path, json.dumps({key: str(target)}).encode())
        _error(status, text, 400, 501)
    assert not target.exists()


def many_chunks(server: ServerProcess, _: Path) -> None:
    """CVE-2025-23310: 70,000 one-byte chunks."""
    request = (
        b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: localhost\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + b"1\r\nA\r\n" * 70_000 + b"0\r\n\r\n"
    )
    host, port = server.http_url.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # The server may stop reading once it has answered.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        response = _read_all(sock)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response[:200]
    assert json.loads(body)["error"] == (
        "Chunked request body exceeds maximum of 65536 non-empty chunks. "
        "Send fewer or larger HTTP chunks."
    )


def header_length_beyond_body(server: ServerProcess, _: Path) -> None:
    body = b'{"inputs": []}'
    status, text = _post(
        server, "/v2/models/simple/infer", body, {"Inference-Header-Content-Length": "99999999"}
    )
    assert "inference header size should be in range" in _error(status, text, 400)


def huge_declared_sizes(server: ServerProcess, _: Path) -> None:
    """2 GB declared in a small body: Content-Length, binary_data_size, and a shape."""
    host, port = server.http_url.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 2147483648\r\n\r\n{}"
        )
        response = _read_all(sock)
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert b"exceeds the maximum allowed value" in response
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 16],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": 2**31},
                }
            ]
        }
    ).encode()
    status, text = _post(
        server,
        "/v2/models/simple/infer",
        header + b"\0" * 64,
        {"Inference-Header-Content-Length": str(len(header))},
    )
    assert "unexpected size for input 'INPUT0'" in _error(status, text, 400)
    for shape in ([2**31, 16], [2**4, 2**60 + 2], [2**62, 2**62]):
        doc = {"inputs": [{"name": "INPUT0", "shape": shape, "datatype": "INT32", "data": [1]}]}
        status, text = _post(server, "/v2/models/simple/infer", json.dumps(doc).encode())
        _error(status, text, 400)


def gzip_bomb(server: ServerProcess, _: Path) -> None:
    bomb = gzip.compress(b"\0" * (80 * 1024 * 1024), compresslevel=9)  # ~80 KB on the wire
    status, text = _post(server, "/v2/models/simple/infer", bomb, {"Content-Encoding": "gzip"})
    assert "exceeds the maximum allowed value" in _error(status, text, 400)


def deep_json(server: ServerProcess, _: Path) -> None:
    for depth in (101, 250_000):
        body = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
        status, text = _post(server, "/v2/models/simple/infer", body)
        message = _error(status, text, 400)
        assert "nesting depth" in message or "failed to parse" in message
        status, text = _post(
            server, "/v2/repository/index", b'{"ready":' + b"[" * depth + b"]" * depth + b"}"
        )
        _error(status, text, 400)


def oversized_headers(server: ServerProcess, _: Path) -> None:
    host, port = server.http_url.split(":")
    # 70 KB usually arrives in one read (the headers complete at once); the others span
    # several reads.
    for headers in (
        b"X-Mid: " + b"a" * 70_000 + b"\r\n",
        b"X-Big: " + b"a" * 200_000 + b"\r\n",
        b"X-H: v\r\n" * 20_000,
    ):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            response = _read_all(sock)
        assert response.startswith(b"HTTP/1.1 431"), response[:200]


def duplicate_outputs(server: ServerProcess, _: Path) -> None:
    """CVE-2026-24146: one small request asking for 100,000 copies of an output."""
    doc = {
        "inputs": [
            {"name": n, "shape": [1, 16], "datatype": "INT32", "data": list(range(16))}
            for n in ("INPUT0", "INPUT1")
        ],
        "outputs": [{"name": "OUTPUT0"}] * 100_000,
    }
    status, text = _post(server, "/v2/models/simple/infer", json.dumps(doc).encode())
    assert _error(status, text, 400) == "output 'OUTPUT0' already exists in request"


def pickle_body(server: ServerProcess, sandbox: Path) -> None:
    """BentoML's CVE-2024-2912: a pickle that would run a command if unpickled."""
    marker = sandbox / "unpickled"
    payload = b"\x80\x04\x95" + b"cos\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    for content_type in ("application/vnd.bentoml+pickle", "application/octet-stream"):
        status, text = _post(
            server, "/v2/models/simple/infer", payload, {"Content-Type": content_type}
        )
        _error(status, text, 400)
    assert not marker.exists()


def shm_registration(server: ServerProcess, _: Path) -> None:
    """CVE-2024-0088 and the shm key leak: bounds, overflow, keys outside the allow-list."""
    from multiprocessing import shared_memory

    name = f"naiad_attack_{RUN}"
    segment = shared_memory.SharedMemory(name, create=True, size=64)
    try:
        cases = [
            ({"key": f"/{name}", "offset": 64, "byte_size": 8}, "invalid args"),
            ({"key": f"/{name}", "offset": 2**64 - 1, "byte_size": 2}, "Integer overflow"),
            ({"key": f"/{name}", "offset": 1, "byte_size": 2**64 - 1}, "Integer overflow"),
            ({"key": "/other_segment", "byte_size": 8}, "is not allowed"),
            ({"key": "///naiad_internal", "byte_size": 8}, "is not allowed"),
            ({"key": f"/naiad_attack_{RUN}/../../etc/passwd", "byte_size": 8}, "invalid"),
        ]
        for doc, message in cases:
            status, text = _post(
                server, "/v2/systemsharedmemory/region/r/register", json.dumps(doc).encode()
            )
            assert message in _error(status, text, 400), doc
    finally:
        segment.close()
        segment.unlink()


def injected_model_names(server: ServerProcess, _: Path) -> None:
    """A model named as a shell command, over HTTP and gRPC, infer and load."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for name in [*INJECTED_NAMES, f"a;touch naiad-pwn-{RUN}"]:
        quoted = name.replace("%", "%25").replace("/", "%2F").replace(" ", "%20")
        quoted = quoted.replace("\n", "%0A").replace("`", "%60").replace("|", "%7C")
        status, text = _post(server, f"/v2/models/{quoted}/infer", b"{}")
        assert status in (400, 404), (name, status, text)
        status, text = _post(server, f"/v2/repository/models/{quoted}/load", b"{}")
        assert status >= 400, (name, status, text)
        with pytest.raises(InferenceServerException):
            client.infer(name, [])
        with pytest.raises(InferenceServerException):
            client.load_model(name)
    stub_request = pb.ModelReadyRequest(name=INJECTED_NAMES[0])
    assert not client._client_stub.ModelReady(stub_request).ready
    client.close()
    assert not PWN.exists()
    assert not list(Path.cwd().glob("naiad-pwn-*"))


ATTACKS: list[Callable[[ServerProcess, Path], None]] = [
    override_escapes,
    network_file_paths,
    many_chunks,
    header_length_beyond_body,
    huge_declared_sizes,
    gzip_bomb,
    deep_json,
    oversized_headers,
    duplicate_outputs,
    pickle_body,
    shm_registration,
    injected_model_names,
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_attack_gets_a_clear_error_and_the_server_keeps_serving(
    server: ServerProcess, sandbox: Path, attack: Callable[[ServerProcess, Path], None]
) -> None:
    attack(server, sandbox)
    _assert_serving(server)


def test_forged_log_lines_stay_escaped(server: ServerProcess) -> None:
    forged = f"forged log line {RUN}"
    assert not any(line.lstrip().startswith(f"I0101 00:00:00 {forged}") for line in server.lines)


def test_memory_stays_flat_under_repeated_attacks(server: ServerProcess, sandbox: Path) -> None:
    assert server.process is not None
    process = psutil.Process(server.process.pid)
    for _ in range(2):  # warm-up: allocator pools, first-use imports
        for attack in ATTACKS:
            attack(server, sandbox)
    before = process.memory_info().rss
    for _ in range(6):
        for attack in ATTACKS:
            attack(server, sandbox)
    growth = process.memory_info().rss - before
    _assert_serving(server)
    assert growth < 32 * 1024 * 1024, f"RSS grew by {growth / 2**20:.1f} MiB"
    assert process.num_fds() < 200
