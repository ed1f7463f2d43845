"""The one error type the command line turns into a one-line message."""

from __future__ import annotations

__all__ = ["HarnessError"]


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
