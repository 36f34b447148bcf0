"""What the worker knows about itself, for the ``pb_utils`` objects that need it.

One model per worker process, so plain module state is enough: the model directory
(``pb_utils.get_model_dir()``), where log messages go, and the verbose level.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

# (level, message, file, line) -> None; prints to stderr until the worker connects it.
LogSink = Callable[[int, str, str, int], None]


def _stderr_sink(level: int, message: str, file: str, line: int) -> None:
    print(f"[{file}:{line}] {message}", file=sys.stderr, flush=True)


model_dir = ""
log_verbose = 0
log_sink: LogSink = _stderr_sink
# Reads cancel messages that wait in the socket while a sync ``execute`` holds the
# worker's loop (set by the executor); ``is_cancelled()`` calls it.
poll_cancel: Callable[[], None] | None = None
