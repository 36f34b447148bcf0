"""s3:// model repositories against a real S3-compatible server (``moto_server``) on loopback.

A real ``naiad serve`` process syncs the bucket into a local cache; what was downloaded
is proven twice: by Naiad's own summary line and by moto's access log of GET requests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import tritonclient.http as httpclient

from naiad.examples import onnx_models
from tests.repository import simple_config, write_model
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "naiad-test",
    "AWS_SECRET_ACCESS_KEY": "naiad-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never wait on an instance-metadata lookup: everything is in the environment.
    "AWS_EC2_METADATA_DISABLED": "true",
}
_RUNNING = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")


class MotoServer:
    """``moto_server`` as a subprocess on an ephemeral port, with its access log kept."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.port: int | None = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 30
        while self.port is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("moto_server did not start:\n" + "\n".join(self.lines))
            time.sleep(0.05)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            match = _RUNNING.search(line)
            if match and self.port is None:
                self.port = int(match.group(1))

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=f"http://{self.endpoint}",
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def object_gets(self, bucket: str, since: int = 0) -> list[str]:
        """Keys of the GetObject requests logged after line ``since`` (listings have no
        ``/`` after the bucket name, so they are not counted)."""
        pattern = re.compile(rf'"GET /{re.escape(bucket)}/([^?\s]+) HTTP/')
        return [m.group(1) for line in self.lines[since:] if (m := pattern.search(line))]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


def _upload(client: Any, bucket: str, prefix: str, local: Path) -> list[str]:
    keys = []
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(local).as_posix()}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        keys.append(key)
    return keys


def _bucket_with_simple(moto: MotoServer, bucket: str, tmp_path: Path) -> list[str]:
    """A bucket holding ``prod/models/simple`` (config + version 1); returns the keys."""
    local = tmp_path / "upload"
    write_model(local, "simple", simple_config("simple", "INT32"), onnx_models.add_sub("INT32"))
    client = moto.client()
    client.create_bucket(Bucket=bucket)
    return _upload(client, bucket, "prod/models", local)


def _serve(moto: MotoServer, bucket: str, cache: Path, *args: str) -> ServerProcess:
    url = f"s3://{moto.endpoint}/{bucket}/prod/models"
    # The address stays a string: Path() would fold its "//".
    return ServerProcess([url], f"--remote-cache-dir={cache}", *args, env=CREDENTIALS)


def _infer(server: ServerProcess) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [httpclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(a)
    result = client.infer("simple", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)


def test_s3_repository_serves_and_a_restart_downloads_nothing(
    moto: MotoServer, tmp_path: Path
) -> None:
    keys = _bucket_with_simple(moto, "serve", tmp_path)
    cache = tmp_path / "cache"
    mark = len(moto.lines)
    with _serve(moto, "serve", cache) as server:
        _infer(server)
    assert "downloaded 2 objects" in server.log
    assert sorted(moto.object_gets("serve", mark)) == sorted(keys)

    mark = len(moto.lines)
    with _serve(moto, "serve", cache) as server:
        _infer(server)
    assert "downloaded 0 objects (0 B), 2 objects up to date" in server.log
    assert moto.object_gets("serve", mark) == []  # listed, but nothing fetched again


def test_changed_object_downloaded_again_and_deleted_object_removed(
    moto: MotoServer, tmp_path: Path
) -> None:
    keys = _bucket_with_simple(moto, "change", tmp_path)
    client = moto.client()
    client.put_object(Bucket="change", Key="prod/models/simple/notes.txt", Body=b"old notes")
    cache = tmp_path / "cache"
    with _serve(moto, "change", cache) as server:
        _infer(server)
    assert "downloaded 3 objects" in server.log
    [notes] = cache.glob("*/repository/simple/notes.txt")

    config_key = next(key for key in keys if key.endswith("config.pbtxt"))
    new_config = simple_config("simple", "INT32", max_batch_size=4)
    client.put_object(Bucket="change", Key=config_key, Body=new_config.encode())
    client.delete_object(Bucket="change", Key="prod/models/simple/notes.txt")
    mark = len(moto.lines)
    with _serve(moto, "change", cache) as server:
        config = httpclient.InferenceServerClient(server.http_url).get_model_config("simple")
        assert config["max_batch_size"] == 4
    assert "downloaded 1 object (" in server.log
    assert "removed 1 file" in server.log
    assert moto.object_gets("change", mark) == [config_key]
    assert not notes.exists()


def test_poll_mode_picks_up_a_version_uploaded_to_the_bucket(
    moto: MotoServer, tmp_path: Path
) -> None:
    _bucket_with_simple(moto, "poll", tmp_path)
    cache = tmp_path / "cache"
    with _serve(
        moto, "poll", cache, "--model-control-mode=poll", "--repository-poll-secs=0.5"
    ) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.is_model_ready("simple", "1")
        moto.client().put_object(
            Bucket="poll",
            Key="prod/models/simple/2/model.onnx",
            Body=onnx_models.add_sub("INT32"),
        )
        deadline = time.monotonic() + 20
        while not client.is_model_ready("simple", "2"):
            assert time.monotonic() < deadline, server.log
            time.sleep(0.1)
        _infer(server)
    assert "downloaded 1 object (" in server.log


def test_unsafe_object_keys_are_skipped(moto: MotoServer, tmp_path: Path) -> None:
    _bucket_with_simple(moto, "unsafe", tmp_path)
    client = moto.client()
    for key in ("prod/models/simple/../../../../escape.txt", "prod/models//absolute.txt"):
        client.put_object(Bucket="unsafe", Key=key, Body=b"not yours")
    cache = tmp_path / "deep" / "cache"
    with _serve(moto, "unsafe", cache) as server:
        _infer(server)
    assert server.log.count("skipping object") == 2
    assert "downloaded 2 objects" in server.log
    assert [p.name for p in tmp_path.rglob("*.txt")] == []
    assert not Path("/absolute.txt").exists()


def test_missing_bucket_fails_start_up_clearly(moto: MotoServer, tmp_path: Path) -> None:
    server = _serve(moto, "no-such-bucket", tmp_path / "cache")
    server.start(wait_ready=False)
    assert server.wait_exit(timeout_s=60) == 1
    assert "failed to list model repository s3://" in server.log
    assert "NoSuchBucket" in server.log


@pytest.mark.parametrize(
    ("root", "text"),
    [
        ("gs://bucket/models", "Google Cloud Storage (gs://) is not supported"),
        ("as://account/container/models", "Azure Storage (as://) is not supported"),
    ],
)
def test_other_clouds_are_refused_clearly(root: str, text: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "naiad", "serve", f"--model-repository={root}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert text in done.stderr
