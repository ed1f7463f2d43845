"""``sweep``: a sweep's picture from the last claims run (:mod:`harness.sweep.cli`)."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from harness.sweep.cli import add_sweep_parser

    add_sweep_parser(sub)
