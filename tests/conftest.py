"""Shared fixtures: one real server process over a generated repository per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.repository import build_standard_repository
from tests.server_process import ServerProcess


@pytest.fixture(scope="session")
def standard_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_standard_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def server(standard_repository: Path) -> Iterator[ServerProcess]:
    with ServerProcess([standard_repository]) as process:
        yield process
