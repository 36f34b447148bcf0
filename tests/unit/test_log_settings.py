"""Live log settings: severities, verbose levels, formats, escaping, refused changes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from naiad.errors import InvalidArgumentError, UnsupportedError
from naiad.observability.log_settings import LogControl, LogSettings, grpc_changes, http_changes

FORGED = "id\nI1122 00:00:00.000000 1 fake.py:1] forged\u2028W fake"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[tuple[LogControl, Path]]:
    path = tmp_path / "server.log"
    control = LogControl(LogSettings(file=str(path)), logger_name="naiad.test_logs")
    yield control, path
    control.close()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_severities_and_verbose_levels_switch_live(log_file: tuple[LogControl, Path]) -> None:
    control, path = log_file
    logger = logging.getLogger("naiad.test_logs.child")
    logger.debug("verbose 1 hidden")
    logger.info("info shown")
    control.update(http_changes({"log_verbose_level": 2, "log_info": False}))
    logger.debug("verbose 1 shown")
    logger.log(logging.DEBUG - 1, "verbose 2 shown")
    logger.log(logging.DEBUG - 2, "verbose 3 hidden")
    logger.info("info hidden")
    logger.warning("warning shown")
    text = path.read_text()
    assert "info shown" in text and "verbose 1 shown" in text and "verbose 2 shown" in text
    assert "hidden" not in text
    assert [line[0] for line in _lines(path)] == ["I", "V", "V", "W"]
    assert control.response() == {
        "log_file": str(path),
        "log_info": False,
        "log_warning": True,
        "log_error": True,
        "log_verbose_level": 2,
        "log_format": "default",
    }


@pytest.mark.parametrize("format_name", ["default", "ISO8601", "json"])
def test_no_format_lets_a_message_forge_a_line(
    log_file: tuple[LogControl, Path], format_name: str
) -> None:
    control, path = log_file
    control.update({"format": format_name})
    logging.getLogger("naiad.test_logs").warning("request id '%s'", FORGED)
    text = path.read_text()
    assert len(text.splitlines()) == 1, text
    if format_name == "json":
        entry = json.loads(text)
        assert entry["message"] == f"request id '{FORGED}'"
        assert entry["level"] == "WARNING"
    elif format_name == "ISO8601":
        assert text[:4].isdigit() and "Z W " in text
    else:
        assert text.startswith("W")


def test_log_file_is_refused_over_both_protocols() -> None:
    with pytest.raises(UnsupportedError, match="log file location can not be updated"):
        http_changes({"log_file": "/tmp/elsewhere.log"})
    assert http_changes({"log_file": None}) == {}  # null changes nothing, as in Triton
    with pytest.raises(UnsupportedError):
        grpc_changes({"log_file": ("string_param", "/tmp/x")})


@pytest.mark.parametrize(
    "body",
    [
        {"log_info": "yes"},
        {"log_verbose_level": -1},
        {"log_verbose_level": True},
        {"log_format": "xml"},
    ],
)
def test_wrong_values_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        http_changes(body)


def test_grpc_changes_check_the_parameter_kind() -> None:
    assert grpc_changes({"log_info": ("bool_param", False)}) == {"info": False}
    assert grpc_changes({"log_verbose_level": ("uint32_param", 3)}) == {"verbose_level": 3}
    with pytest.raises(InvalidArgumentError, match="expect boolean for 'log_warning'"):
        grpc_changes({"log_warning": ("string_param", "true")})
