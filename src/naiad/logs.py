"""Logging set-up in Triton's line format: ``I1122 00:32:40.123456 1234 file.py:42] message``.

Messages are escaped so that text from a request (a model name, an id) can never
start a new, forged log line.
"""

from __future__ import annotations

import logging
import sys
import time

_LEVEL_LETTER = {logging.DEBUG: "V", logging.INFO: "I", logging.WARNING: "W", logging.ERROR: "E"}

# Every character that some reader takes as a line break or a terminal control (the C0
# controls except tab, DEL, NEL, and the Unicode line and paragraph separators) is written
# as an escape, so that no text taken from a request can start a line of its own.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, 0x85] if code != 0x09}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_message(message: str) -> str:
    return message.translate(_ESCAPES)


def level_letter(levelno: int) -> str:
    """Triton's severity letter; every level below INFO is verbose."""
    return "V" if levelno < logging.INFO else _LEVEL_LETTER.get(levelno, "E")


class TritonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        letter = level_letter(record.levelno)
        stamp = time.strftime("%m%d %H:%M:%S", time.localtime(record.created))
        micros = int((record.created % 1) * 1_000_000)
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        message = escape_message(message)
        return f"{letter}{stamp}.{micros:06d} {record.process} {record.filename}:{record.lineno}] {message}"


def configure_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TritonFormatter())
    root = logging.getLogger("naiad")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose > 0 else logging.INFO)
    root.propagate = False
