"""The server-worker wire: frames, inline and memfd tensor bytes, blocking and async channels."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from naiad.backends.python.runtime._naiad_pb import messages
from naiad.backends.python.runtime._naiad_pb.channel import Channel
from naiad.backends.python.runtime._naiad_pb.wire import (
    INLINE,
    SHARED,
    ChannelClosed,
    Frame,
    FrameReader,
    PayloadBuilder,
    frame_buffers,
    memfd_supported,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _pair() -> tuple[Channel, Channel]:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return Channel(left, _dumps, json.loads), Channel(right, _dumps, json.loads)


@pytest.fixture
def pair() -> Iterator[tuple[Channel, Channel]]:
    sender, receiver = _pair()
    try:
        yield sender, receiver
    finally:
        sender.close()
        receiver.close()


def _tensor(frame: Frame, desc: list[Any], dtype: Any) -> np.ndarray:
    where, offset, nbytes = desc[-3:]
    return np.frombuffer(frame.tensor_bytes(where, offset, nbytes), dtype=dtype)


def test_small_tensors_go_inline_and_aligned() -> None:
    builder = PayloadBuilder(shared_memory=True, threshold=1024)
    first: list[Any] = ["a"]
    second: list[Any] = ["b"]
    builder.add(b"\x01\x02\x03", first)
    builder.add(memoryview(np.arange(4, dtype=np.int32)).cast("B"), second)
    assert first[1:] == [INLINE, 0, 3]
    assert second[1:] == [INLINE, 64, 16]  # aligned for numpy views
    assert builder.finish() is None


@pytest.mark.skipif(not memfd_supported(), reason="no memfd on this platform")
def test_large_tensors_travel_in_a_memfd_with_the_frame(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    big = np.arange(1 << 16, dtype=np.float32)
    small = np.arange(3, dtype=np.int64)
    builder = PayloadBuilder(shared_memory=True, threshold=4096)
    big_desc: list[Any] = ["big"]
    small_desc: list[Any] = ["small"]
    builder.add(memoryview(big).cast("B"), big_desc)
    builder.add(memoryview(small).cast("B"), small_desc)
    assert big_desc[1] == SHARED and small_desc[1] == INLINE
    sender.send({"k": "t", "tensors": [big_desc, small_desc]}, builder)
    frame = receiver.recv_blocking(5)
    assert frame.shared is not None
    got_big, got_small = frame.header["tensors"]
    np.testing.assert_array_equal(_tensor(frame, got_big, np.float32), big)
    np.testing.assert_array_equal(_tensor(frame, got_small, np.int64), small)


def test_shared_memory_off_sends_everything_through_the_socket(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    big = np.arange(1 << 12, dtype=np.float32)  # fits the socket buffer: send blocks
    builder = PayloadBuilder(shared_memory=False, threshold=0)
    desc: list[Any] = ["big"]
    builder.add(memoryview(big).cast("B"), desc)
    sender.send({"k": "t", "d": desc}, builder)
    frame = receiver.recv_blocking(5)
    assert frame.shared is None and frame.header["d"][1] == INLINE
    np.testing.assert_array_equal(_tensor(frame, frame.header["d"], np.float32), big)


def test_async_channel_handles_large_frames_and_partial_writes(
    pair: tuple[Channel, Channel],
) -> None:
    sender, receiver = pair
    # Small kernel buffers force partial sends and a payload arriving in many reads.
    sender.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    payload = np.random.default_rng(3).integers(0, 255, 3 << 20, dtype=np.uint8)

    async def run() -> list[Frame]:
        loop = asyncio.get_running_loop()
        received: list[Frame] = []
        done = loop.create_future()

        def on_frame(frame: Frame) -> None:
            received.append(frame)
            if len(received) == 3:
                done.set_result(None)

        receiver.attach(loop, on_frame, lambda error: None)
        sender.attach(loop, lambda frame: None, lambda error: None)
        for index in range(3):
            builder = PayloadBuilder(shared_memory=False)
            desc: list[Any] = ["p"]
            builder.add(memoryview(payload).cast("B"), desc)
            sender.send({"k": "t", "i": index, "d": desc}, builder)
        await asyncio.wait_for(done, 10)
        sender.close()
        receiver.close()
        return received

    frames = asyncio.run(run())
    assert [f.header["i"] for f in frames] == [0, 1, 2]
    for frame in frames:
        np.testing.assert_array_equal(_tensor(frame, frame.header["d"], np.uint8), payload)


def test_end_of_stream_is_reported(pair: tuple[Channel, Channel]) -> None:
    sender, receiver = pair
    sender.close()
    with pytest.raises(ChannelClosed):
        receiver.recv_blocking(5)


def test_no_descriptor_leaks_from_memfd_frames() -> None:
    if not memfd_supported():
        pytest.skip("no memfd on this platform")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        sender, receiver = _pair()
        builder = PayloadBuilder(shared_memory=True, threshold=1)
        builder.add(b"x" * 100, ["x"])
        sender.send({"k": "t"}, builder)
        frame = receiver.recv_blocking(5)
        assert frame.shared is not None
        frame.shared.close()
        sender.close()
        receiver.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_messages_round_trip_through_their_header_form() -> None:
    request = messages.RequestMsg(
        "id", [["IN", "FP32", [1], 0, 0, 4]], ["OUT"], '{"a":1}', "seq", 1, 5
    )
    batch = messages.ExecuteMsg(7, [request])
    assert messages.ExecuteMsg.from_header(json.loads(json.dumps(batch.to_header()))) == batch
    done = messages.ExecuteDoneMsg(
        7,
        [
            messages.ResponseMsg([["OUT", "FP32", [1], 0, 0, 4]]),
            messages.ResponseMsg(error=messages.ErrorInfo("INVALID_ARG", "bad")),
        ],
    )
    assert messages.ExecuteDoneMsg.from_header(json.loads(json.dumps(done.to_header()))) == done
    init = messages.InitMsg(module_file="/m/1/model.py", args={"model_name": "m"})
    assert messages.InitMsg.from_header(init.to_header()) == init
    # The hot paths read and write the wire lists by position.
    wire = request.to_wire()
    assert (wire[messages.R_ID], wire[messages.R_PARAMETERS], wire[messages.R_TIMEOUT]) == (
        "id",
        '{"a":1}',
        5,
    )
    assert done.responses[1].to_wire()[messages.P_ERROR] == ["INVALID_ARG", "bad"]


def test_frames_split_anywhere_across_reads_are_reassembled() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sender = Channel(left, _dumps, json.loads)
    receiver = FrameReader(json.loads)
    right.setblocking(False)
    raw = bytearray()
    for index in range(3):
        builder = PayloadBuilder(shared_memory=False)
        desc: list[Any] = ["x"]
        builder.add(bytes([index]) * (10 + index), desc)
        buffers = frame_buffers(_dumps({"k": "t", "i": index, "d": desc}), builder.parts, 64)
        raw += b"".join(bytes(b) for b in buffers)
        raw += bytes(64 - builder.size)  # the declared payload size
    try:
        # Cuts inside a prefix, inside a header, inside a payload, and between frames.
        for start, end in zip((0, 5, 30, 90, 100), (5, 30, 90, 100, len(raw)), strict=True):
            left.sendall(raw[start:end])
            # True: the read filled what it read into, so more may be waiting.
            while receiver.read_once(right):
                pass
            with pytest.raises(BlockingIOError):
                receiver.read_once(right)
    finally:
        sender.close()
        right.close()
    frames = list(receiver.frames)
    assert [f.header["i"] for f in frames] == [0, 1, 2]
    assert [bytes(f.tensor_bytes(*f.header["d"][1:])) for f in frames] == [
        bytes([i]) * (10 + i) for i in range(3)
    ]
