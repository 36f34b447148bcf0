"""The load API's override model directory: a ``config`` plus ``file:<path>`` contents.

Every path is checked before anything is written: relative, no ``..`` or empty parts,
short parts, no symlink on the way out of the directory, and bounded total size. The
directory lives under a private temporary root and replaces the repository's copy of
the model for that load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from google.protobuf import text_format

from naiad.config.model_config import parse_config_json
from naiad.errors import InvalidArgumentError

MAX_PATH_PART_CHARS = 255
MAX_OVERRIDE_BYTES = 1 << 30  # 1 GiB of file contents in one load request
MAX_OVERRIDE_FILES = 1024


def check_override_path(relative: str) -> PurePosixPath:
    """Accept ``<version>/<name>`` style relative paths only."""
    path = PurePosixPath(relative)
    if not relative or path.is_absolute() or "\\" in relative or "\0" in relative:
        raise InvalidArgumentError(f"invalid override file path '{relative[:64]}'")
    for part in path.parts:
        if part in ("", ".", ".."):
            raise InvalidArgumentError(f"invalid override file path '{relative[:64]}'")
        if len(part) > MAX_PATH_PART_CHARS:
            raise InvalidArgumentError(
                f"override file path has a part longer than {MAX_PATH_PART_CHARS} characters"
            )
    return path


def materialize_override(
    name: str, config_json: str, files: dict[str, bytes], temp_root: Path
) -> Path:
    """Write an override model directory; returns its path (the caller removes it)."""
    config = parse_config_json(config_json, f"the 'config' parameter of the load of '{name}'")
    if len(files) > MAX_OVERRIDE_FILES:
        raise InvalidArgumentError(f"too many override files (more than {MAX_OVERRIDE_FILES})")
    if sum(len(content) for content in files.values()) > MAX_OVERRIDE_BYTES:
        raise InvalidArgumentError(f"override files exceed {MAX_OVERRIDE_BYTES} bytes")
    checked = {check_override_path(relative): content for relative, content in files.items()}
    temp_root.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="override-", dir=temp_root))
    model_dir = base / name
    try:
        model_dir.mkdir()
        for relative, content in checked.items():
            target = model_dir.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            # No symlink can exist in a directory we just created, but check anyway:
            # the resolved target must stay inside the override directory.
            if not str(target.resolve()).startswith(str(model_dir.resolve()) + os.sep):
                raise InvalidArgumentError("override file path escapes the model directory")
            target.write_bytes(content)
        if not config.name:
            config.name = name
        (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return model_dir
