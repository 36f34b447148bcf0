"""Decoupled python models over gRPC ``ModelStreamInfer``, with tritonclient's stream API.

A repeat model (one request, N responses in order; requests interleaved on one stream),
a square model (IN=0 yields no response unless the client opts in to the empty final),
a non-decoupled model over the stream, and errors that leave the stream open.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests import python_models as models
from tests.python_models import write_python_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

Results = queue.Queue[tuple[Any, Any]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repo = tmp_path_factory.mktemp("decoupled")
    write_python_model(repo, "repeat", models.REPEAT, models.REPEAT_CONFIG)
    write_python_model(repo, "square", models.SQUARE, models.SQUARE_CONFIG)
    write_python_model(repo, "add_sub", models.ADD_SUB, models.ADD_SUB_CONFIG)
    with ServerProcess([repo]) as process:
        yield process


@pytest.fixture()
def stream(server: ServerProcess) -> Iterator[tuple[grpcclient.InferenceServerClient, Results]]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    results: Results = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        yield client, results
    finally:
        client.stop_stream()
        client.close()


def _int32(name: str, values: list[int]) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(values)], "INT32")
    tensor.set_data_from_numpy(np.array(values, dtype=np.int32))
    return tensor


def _take(results: Results, count: int) -> list[tuple[Any, Any]]:
    return [results.get(timeout=10) for _ in range(count)]


def _final(result: grpcclient.InferResult) -> bool:
    return bool(result.get_response().parameters["triton_final_response"].bool_param)


def test_repeat_sends_n_responses_in_order(stream: Any) -> None:
    client, results = stream
    client.async_stream_infer("repeat", [_int32("IN", [4, 7, 9])], request_id="r1")
    taken = _take(results, 3)
    assert [error for _, error in taken] == [None] * 3
    assert [int(r.as_numpy("OUT")[0]) for r, _ in taken] == [4, 7, 9]
    assert [int(r.as_numpy("IDX")[0]) for r, _ in taken] == [0, 1, 2]
    assert {r.get_response().id for r, _ in taken} == {"r1"}
    assert [_final(r) for r, _ in taken] == [False, False, False]
    with pytest.raises(queue.Empty):  # no flag-only final without the opt-in
        results.get(timeout=0.3)


def test_two_requests_interleave_on_one_stream(stream: Any) -> None:
    client, results = stream
    client.async_stream_infer("repeat", [_int32("IN", [1, 2, 3, 4, 5])], request_id="a")
    client.async_stream_infer("repeat", [_int32("IN", [10, 20, 30, 40, 50])], request_id="b")
    taken = _take(results, 10)
    assert [e for _, e in taken] == [None] * 10
    order = [r.get_response().id for r, _ in taken]
    by_id = {rid: [int(r.as_numpy("OUT")[0]) for r, _ in taken if r.get_response().id == rid]
             for rid in ("a", "b")}  # fmt: skip
    assert by_id == {"a": [1, 2, 3, 4, 5], "b": [10, 20, 30, 40, 50]}
    # Both ran at once: their responses are mixed, not one request after the other.
    assert order != ["a"] * 5 + ["b"] * 5 and order != ["b"] * 5 + ["a"] * 5


def test_square_zero_sends_nothing_without_the_empty_final(stream: Any) -> None:
    client, results = stream
    client.async_stream_infer("square", [_int32("IN", [0])], request_id="zero")
    client.async_stream_infer("square", [_int32("IN", [2])], request_id="two")
    taken = _take(results, 2)
    assert [r.get_response().id for r, _ in taken] == ["two", "two"]
    assert [int(r.as_numpy("OUT")[0]) for r, _ in taken] == [2, 2]
    with pytest.raises(queue.Empty):
        results.get(timeout=0.5)


def test_square_with_the_empty_final_opt_in(stream: Any) -> None:
    client, results = stream
    client.async_stream_infer(
        "square", [_int32("IN", [0])], request_id="zero", enable_empty_final_response=True
    )
    ((result, error),) = _take(results, 1)
    assert error is None
    response = result.get_response()
    assert response.id == "zero" and not response.outputs and _final(result)
    client.async_stream_infer(
        "square", [_int32("IN", [2])], request_id="two", enable_empty_final_response=True
    )
    taken = _take(results, 3)
    assert [len(r.get_response().outputs) for r, _ in taken] == [1, 1, 0]
    assert [_final(r) for r, _ in taken] == [False, False, True]


def test_non_decoupled_model_over_the_stream(stream: Any) -> None:
    client, results = stream
    a = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    a.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    b = grpcclient.InferInput("INPUT1", [1, 4], "FP32")
    b.set_data_from_numpy(np.full((1, 4), 2.0, dtype=np.float32))
    client.async_stream_infer("add_sub", [a, b], request_id="plain")
    ((result, error),) = _take(results, 1)
    assert error is None and result.get_response().id == "plain" and _final(result)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.full((1, 4), 3.0))


def test_errors_inside_the_stream_leave_it_open(stream: Any) -> None:
    client, results = stream
    client.async_stream_infer("no_such_model", [_int32("IN", [1])], request_id="x")
    client.async_stream_infer("square", [_int32("IN", [-3])], request_id="neg")
    errors = sorted(str(error) for _, error in _take(results, 2))
    assert any("negative count -3" in text for text in errors)
    assert any("no_such_model" in text for text in errors)
    client.async_stream_infer("square", [_int32("IN", [1])], request_id="after")
    ((result, error),) = _take(results, 1)
    assert error is None and int(result.as_numpy("OUT")[0]) == 1


def test_unary_infer_of_a_decoupled_model_is_refused(server: ServerProcess) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    with client, pytest.raises(InferenceServerException) as caught:
        client.infer("square", [_int32("IN", [1])])
    assert caught.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "ModelInfer RPC doesn't support models with decoupled transaction policy" in str(
        caught.value
    )


def test_http_infer_of_a_decoupled_model_is_refused_as_triton(server: ServerProcess) -> None:
    body = json.dumps(
        {"inputs": [{"name": "IN", "shape": [1], "datatype": "INT32", "data": [1]}]}
    ).encode()
    connection = HTTPConnection(server.http_url)
    try:
        connection.request("POST", "/v2/models/square/infer", body)
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 501
    assert answer == {
        "error": "HTTP end point doesn't support models with decoupled transaction policy"
    }


# -- HTTP: generate, generate_stream, SSE infer --------------------------------------


def _post(server: ServerProcess, path: str, body: Any, accept: str = "") -> tuple[int, str, bytes]:
    connection = HTTPConnection(server.http_url)
    headers = {"Content-Type": "application/json"} | ({"Accept": accept} if accept else {})
    try:
        connection.request("POST", path, json.dumps(body).encode(), headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def _events(raw: bytes) -> list[Any]:
    chunks = raw.decode().split("\n\n")
    assert chunks[-1] == ""
    assert all(chunk.startswith("data: ") for chunk in chunks[:-1])
    return [json.loads(chunk[len("data: ") :]) for chunk in chunks[:-1]]


def test_generate_of_plain_and_decoupled_models(server: ServerProcess) -> None:
    status, _, raw = _post(
        server,
        "/v2/models/add_sub/generate",
        {"INPUT0": [1, 2, 3, 4], "INPUT1": [1, 1, 1, 1], "parameters": {"p": 1}, "temp": 0.5},
    )
    assert status == 200, raw
    assert json.loads(raw) == {
        "model_name": "add_sub",
        "model_version": "1",
        "OUTPUT0": [2.0, 3.0, 4.0, 5.0],
        "OUTPUT1": [0.0, 1.0, 2.0, 3.0],
    }
    status, _, raw = _post(server, "/v2/models/square/versions/1/generate", {"IN": 1})
    assert status == 200 and json.loads(raw)["OUT"] == 1  # single-element arrays unwrapped
    status, _, raw = _post(server, "/v2/models/no_such_model/generate", {"IN": 1})
    assert status == 404 and "no_such_model" in json.loads(raw)["error"]


def test_generate_stream_sends_server_sent_events(server: ServerProcess) -> None:
    status, content_type, raw = _post(
        server, "/v2/models/repeat/generate_stream", {"IN": [4, 7, 9]}
    )
    assert status == 200 and content_type.startswith("text/event-stream")
    events = _events(raw)
    assert [(e["OUT"], e["IDX"]) for e in events] == [(4, 0), (7, 1), (9, 2)]
    assert {e["model_name"] for e in events} == {"repeat"}
    status, _, raw = _post(server, "/v2/models/square/generate_stream", {"IN": -3})
    assert status == 200 and _events(raw) == [{"error": "negative count -3"}]


def test_infer_of_a_decoupled_model_streams_when_asked_for_events(server: ServerProcess) -> None:
    body = {
        "id": "s1",
        "inputs": [{"name": "IN", "shape": [2], "datatype": "INT32", "data": [5, 6]}],
    }
    status, content_type, raw = _post(
        server, "/v2/models/repeat/infer", body, accept="text/event-stream"
    )
    assert status == 200 and content_type.startswith("text/event-stream")
    events = _events(raw)
    assert [e["id"] for e in events] == ["s1", "s1"]
    outs = [next(o["data"] for o in e["outputs"] if o["name"] == "OUT") for e in events]
    assert outs == [[5], [6]]
