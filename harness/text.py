"""Text that reaches a terminal: every control character escaped (one function, used everywhere).

Predictions, relays, gold strings, condition names and paths come from files. Printed raw, an
ANSI escape in one of them could clear the screen or recolour a verdict, and a carriage return
could overwrite a table row. :func:`printable` turns each control character (C0, DEL, C1, and
the bidirectional overrides that reorder a line) into a visible escape such as ``\\x1b``; the
command lines pass every line they print through it.
"""

from __future__ import annotations

import argparse
import logging
import re
from typing import NoReturn

__all__ = ["ArgumentParser", "log_handler", "printable"]

# C0 controls, DEL, C1 controls, and the bidi embedding/override/isolate marks (a line that
# renders in another order than it reads). Newline is kept with ``keep_newlines``.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]")
_CONTROL_NO_NL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\u061c]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with every control character as a visible escape (``\\x1b``, ``\\r``...).

    ``keep_newlines`` keeps newlines (for multi-line text such as the claim table); otherwise
    they are escaped too, so one value stays on one line (table cells, error lines). Tabs are
    always escaped (one would shift a table's columns).
    """
    s = text if isinstance(text, str) else str(text)
    return (_CONTROL_NO_NL if keep_newlines else _CONTROL).sub(_escape, s)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors escape control characters: argparse
    quotes an unrecognised argument raw (``unrecognized arguments: \\x1b[2J``)."""

    def error(self, message: str) -> NoReturn:
        super().error(printable(message, keep_newlines=True))


def log_handler(fmt: str) -> logging.Handler:
    """A stderr handler whose every line goes through :func:`printable` (log messages carry
    paths and condition names from files); for ``logging.basicConfig(handlers=[...])``."""

    class _Printable(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record), keep_newlines=True)

    handler = logging.StreamHandler()
    handler.setFormatter(_Printable(fmt))
    return handler
