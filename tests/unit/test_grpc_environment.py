"""The gRPC core environment set before grpc loads (naiad/grpc_environment.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc
import pytest

from naiad import grpc_environment
from naiad.grpc_environment import (
    LEGACY_LISTENER_EXPERIMENT,
    installed_grpcio_version,
    prefer_legacy_listener,
)


def test_reads_the_installed_grpcio_version_without_importing_it() -> None:
    major, minor = (int(part) for part in grpc.__version__.split(".")[:2])
    assert installed_grpcio_version() == (major, minor)


def test_sets_the_legacy_listener_for_a_measured_grpcio() -> None:
    environ: dict[str, str] = {}
    assert prefer_legacy_listener(environ) is True
    assert environ == {"GRPC_EXPERIMENTS": LEGACY_LISTENER_EXPERIMENT}


@pytest.mark.parametrize("value", ["", "event_engine_listener", "-some_other"])
def test_leaves_a_users_own_setting_alone(value: str) -> None:
    environ = {"GRPC_EXPERIMENTS": value}
    assert prefer_legacy_listener(environ) is False
    assert environ == {"GRPC_EXPERIMENTS": value}


@pytest.mark.parametrize("version", [None, (1, 59), (1, 90), (2, 0)])
def test_leaves_an_unmeasured_grpcio_alone(
    monkeypatch: pytest.MonkeyPatch, version: tuple[int, int] | None
) -> None:
    monkeypatch.setattr(grpc_environment, "installed_grpcio_version", lambda: version)
    environ: dict[str, str] = {}
    assert prefer_legacy_listener(environ) is False
    assert environ == {}


def test_the_command_line_sets_it_before_grpc_is_imported() -> None:
    # gRPC core reads the variable when it loads: a later setting has no effect, so
    # the order of the imports is the behaviour under test.
    env = dict(os.environ)
    env.pop("GRPC_EXPERIMENTS", None)
    probe = (
        "import os\n"
        "import naiad.cli\n"
        "import naiad.frontends.grpc.server\n"  # what serving loads later
        "print(os.environ.get('GRPC_EXPERIMENTS'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert result.stdout.strip() == LEGACY_LISTENER_EXPERIMENT
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert "grpc" in imported
    assert imported.index("naiad.grpc_environment") < imported.index("grpc")
