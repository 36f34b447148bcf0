"""Logging set-up in Triton's line format: ``I1122 00:32:40.123456 1234 file.py:42] message``.

Messages are escaped so that text from a request (a model name, an id) can never
start a new, forged log line.
"""

from __future__ import annotations

import logging
import sys
import time

_LEVEL_LETTER = {logging.DEBUG: "V", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "E"}


class TritonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        letter = _LEVEL_LETTER.get(record.levelno, "E")
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1_000_000)
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        return f"{letter}{stamp}.{micros:06d} {record.process} {record.filename}:{record.lineno}] {message}"


def configure_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TritonFormatter())
    root = logging.getLogger("naiad")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 0 else logging.INFO)
    root.propagate = False
