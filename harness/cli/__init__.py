"""``python -m harness <command>``: one dispatcher, one module per sub-command.

The result-file commands (``summarize``, ``compare``, ``validate``, ``audit``, ``figures``,
``claims``, ``report``, ...) take result directories (default: the paper artifact's
``results/final`` and ``results/final_strict_controls``), print a readable table and, with
``--json PATH``, write machine-readable output; ``run`` runs a protocol; ``bench`` and
``mini`` own their flags (:mod:`harness.cli.delegated`). Errors are one line and a non-zero
exit code (a traceback only with ``--debug``). A new sub-command is a module here with a
``register(subparsers)`` that sets ``fn``, listed in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError, report_errors
from harness.text import ArgumentParser, log_handler

__all__ = ["COMMANDS", "build_parser", "main"]

log = logging.getLogger("harness")

# The sub-command modules, in the order of the help text.
COMMANDS = (
    "harness.cli.tables",
    "harness.cli.validate",
    "harness.cli.audit",
    "harness.cli.figures",
    "harness.cli.artifact",
    "harness.cli.claims",
    "harness.cli.report",
    "harness.cli.run",
    "harness.cli.sweep",
    "harness.cli.delegated",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command of :data:`COMMANDS` registered."""
    parser = ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # text from models may hold lone surrogates
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "delegated", False):  # bench, mini: every other argument is theirs
        args.rest = [*extra, *args.rest]
        return int(args.fn(args) or 0)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.debug else logging.WARNING,
        handlers=[log_handler("%(levelname)s %(name)s: %(message)s")],
    )
    return report_errors(lambda: _checked(args), debug=args.debug)


def _checked(args: argparse.Namespace) -> int:
    """Check the output paths and input files a command names, then run it."""
    import os

    from harness.io import check_output_dir, check_output_file

    for option in ("json", "out", "eval", "status", "protocol", "artifact"):
        value = getattr(args, option, None)
        if isinstance(value, str):
            try:
                os.fsencode(value)
            except UnicodeEncodeError:
                raise HarnessError(
                    f"--{option} {value!r} cannot be a file name on this system "
                    "(it holds an unencodable character)",
                    "pass a path of plain characters",
                ) from None
    if getattr(args, "json", None):
        check_output_file(args.json, "--json")
    if getattr(args, "out", None) and not getattr(args, "writes_elsewhere", False):
        check_output_dir(args.out, "--out")
    if getattr(args, "eval", None) and not Path(args.eval).is_file():
        raise HarnessError(f"--eval {args.eval}: no such file", "pass the eval JSONL to hash-check")
    return args.fn(args)
