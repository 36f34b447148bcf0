"""A cheap fingerprint of a model directory, so polling can tell what changed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def directory_fingerprint(model_dir: Path, exclude: frozenset[str] = frozenset()) -> str:
    """Hash of every file's relative path, size and modification time (not contents).

    ``exclude`` names top-level entries to leave out (e.g. the config file, to see
    whether anything but the config changed).
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        relative_root = Path(root).relative_to(model_dir)
        if relative_root.parts and relative_root.parts[0] in exclude:
            continue
        for name in sorted(files):
            relative = relative_root / name
            if not relative_root.parts and name in exclude:
                continue
            try:
                stat = (Path(root) / name).stat()
            except OSError:
                continue  # vanished while we looked; the next poll sees the rest
            digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
