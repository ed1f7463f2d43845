"""The one error type the command line turns into a one-line message."""

from __future__ import annotations

import sys
from collections.abc import Callable

__all__ = ["HarnessError", "report_errors"]


class HarnessError(Exception):
    """A user-facing error: what is wrong, where, and how to fix it.

    ``str(err)`` is a single line; the CLI prints it and exits with ``exit_code`` (no
    traceback unless ``--debug``).
    """

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} -- {fix}" if fix else what)


def report_errors(fn: Callable[[], int], *, debug: bool = False) -> int:
    """Run a command; turn a :class:`HarnessError` or an ``OSError`` into one stderr line.

    Returns the command's exit code, or the error's (2). ``debug`` re-raises instead.
    """
    from harness.text import printable

    try:
        return int(fn() or 0)
    except HarnessError as exc:
        if debug:
            raise
        print(f"error: {printable(exc)}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a path that is a file, unwritable, or a full disk
        if debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(
            f"error: {printable(exc.strerror or exc)}{printable(where)} -- check the path, its permissions and free "
            "space (--debug for a traceback)",
            file=sys.stderr,
        )
        return HarnessError.exit_code
