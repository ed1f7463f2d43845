"""``figures``: figures 2-7 as PNG for result directories."""

from __future__ import annotations

import argparse

from harness.cli.common import (
    protocol_of,
    results_of,
    with_dirs,
)
from harness.text import printable

__all__ = ["cmd_figures", "register"]


def cmd_figures(args: argparse.Namespace) -> int:
    from harness.analysis.audit import audit
    from harness.analysis.figures import write_figures
    from harness.analysis.tables import compare, summarize

    proto = protocol_of(args)
    rs = results_of(args)
    paths = write_figures(
        args.out,
        rs,
        summarize(rs),
        compare(rs, stats=proto.stats, directions=("fwd",)),
        audit(rs, proto.audit.conditions, per_file=proto.audit.per_file),
        source=args.source or "",
    )
    for p in paths:
        print(printable(p))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = with_dirs(sub.add_parser("figures", help="write figures 2-6 as PNG"))
    p.add_argument("--out", default="out/figures", help="output folder")
    p.add_argument("--source", help="label for figure titles")
    p.set_defaults(fn=cmd_figures)
