"""The logging extension on a real server: live verbosity and format, the refused log file,
and log lines a request cannot forge (whatever its id holds).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

GOOD = np.arange(16, dtype=np.int32).reshape(1, 16)
# What a forged line would look like; the server's own lines start the same way.
FORGED = "I1122 00:00:00.000000 1 fake.py:1] forged"
TRITON_LINE = re.compile(r"^[IWEV]\d{4} \d\d:\d\d:\d\d\.\d{6} \d+ [\w.]+:\d+\] ")


def _http_infer(server: ServerProcess, request_id: str) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(GOOD)
        inputs.append(tensor)
    client.infer("simple", inputs, request_id=request_id)


def _grpc_infer(server: ServerProcess, request_id: str) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = grpcclient.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(GOOD)
        inputs.append(tensor)
    client.infer("simple", inputs, request_id=request_id)


def _wait_for(
    server: ServerProcess, predicate: Callable[[str], bool], timeout_s: float = 10.0
) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [line for line in list(server.lines) if predicate(line)]
        if found:
            return found
        time.sleep(0.05)
    return []


@pytest.fixture(scope="module")
def server(standard_repository: object) -> Iterator[ServerProcess]:
    with ServerProcess([standard_repository]) as process:  # type: ignore[list-item]
        yield process


def test_verbosity_changes_on_the_fly(server: ServerProcess) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    assert http.get_log_settings() == {
        "log_file": "",
        "log_info": True,
        "log_warning": True,
        "log_error": True,
        "log_verbose_level": 0,
        "log_format": "default",
    }
    assert "logging" in http.get_server_metadata()["extensions"]
    _http_infer(server, "quiet-before")
    assert http.update_log_settings({"log_verbose_level": 1})["log_verbose_level"] == 1
    _http_infer(server, "loud-after")
    (line,) = _wait_for(server, lambda text: "loud-after" in text)
    assert TRITON_LINE.match(line) and line.startswith("V")
    # Back to quiet over gRPC; the next request leaves no trace in the log.
    settings = grpc.update_log_settings({"log_verbose_level": 0}, as_json=True)["settings"]
    assert settings["log_verbose_level"]["uint32_param"] == 0
    _grpc_infer(server, "quiet-again")
    _http_infer(server, "marker")  # any later line shows the log has caught up
    time.sleep(0.3)
    assert not any("quiet-before" in text or "quiet-again" in text for text in server.lines)


def test_log_format_changes_on_the_fly(server: ServerProcess) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    http.update_log_settings({"log_verbose_level": 1, "log_format": "ISO8601"})
    try:
        _http_infer(server, "iso-line")
        (line,) = _wait_for(server, lambda text: "iso-line" in text)
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ V \d+ ", line), line
    finally:
        http.update_log_settings({"log_verbose_level": 0, "log_format": "default"})


def test_log_file_cannot_be_set_over_the_network(server: ServerProcess) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    message = "log file location can not be updated through network protocol"
    with pytest.raises(InferenceServerException, match=message):
        http.update_log_settings({"log_file": "/tmp/naiad-forged.log"})
    with pytest.raises(InferenceServerException, match=message) as error:
        grpc.update_log_settings({"log_file": "/tmp/naiad-forged.log"})
    assert error.value.status() == "StatusCode.UNIMPLEMENTED"
    with pytest.raises(InferenceServerException, match="expect boolean for 'log_info'"):
        http.update_log_settings({"log_info": "maybe"})
    assert http.get_log_settings()["log_file"] == ""


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_id_cannot_forge_a_log_line(server: ServerProcess, protocol: str) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    http.update_log_settings({"log_verbose_level": 1})
    try:
        marker = f"forge-{protocol}"
        request_id = f"{marker}\n{FORGED}\r\n{FORGED}\u2028{FORGED}"
        (_http_infer if protocol == "http" else _grpc_infer)(server, request_id)
        (line,) = _wait_for(server, lambda text: marker in text)
    finally:
        http.update_log_settings({"log_verbose_level": 0})
    assert TRITON_LINE.match(line)
    assert "\\n" + FORGED in line and "\\r\\n" in line and "\\u2028" in line
    assert not any(text.startswith(FORGED) for text in server.lines)


def test_json_log_format(standard_repository: object) -> None:
    with ServerProcess(
        [standard_repository],  # type: ignore[list-item]
        "--log-format=json",
        "--log-verbose=1",
    ) as server:
        _http_infer(server, f"json-id\n{FORGED}")
        (line,) = _wait_for(server, lambda text: "json-id" in text)
        entry = json.loads(line)
        assert entry["level"] == "VERBOSE" and entry["verbose_level"] == 1
        assert f"json-id\n{FORGED}" in entry["message"]
        started = [json.loads(text) for text in server.lines if "Started HTTPService" in text]
        assert started and started[0]["level"] == "INFO" and started[0]["logger"] == "naiad.server"
        assert (
            httpclient.InferenceServerClient(server.http_url).get_log_settings()["log_format"]
            == "json"
        )
