"""``python -m harness mini train|evaluate``: listed in the top-level help.

``harness.cli.main`` hands ``mini train ...`` and ``mini evaluate ...`` straight to
:func:`harness.mini.train.main` and :func:`harness.mini.evaluate.main`, which own their flags.
"""

from __future__ import annotations

import argparse

__all__ = ["add_mini_parser"]


def add_mini_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("mini", help="mini pair: 'mini train --help', 'mini evaluate --help'")
    p.add_argument("mini_command", choices=["train", "evaluate"])
    return p
