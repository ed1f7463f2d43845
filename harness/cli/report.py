"""``report``: tables, validation, audit and figures for every available source."""

from __future__ import annotations

import argparse

from harness.text import printable

__all__ = ["cmd_report", "register"]


def cmd_report(args: argparse.Namespace) -> int:
    from harness.analysis.report import write_report

    for line in write_report(args.out, artifact=args.artifact, sources=args.source):
        print(printable(line))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="tables, validation, audit and figures for every available source"
    )
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--artifact", help="paper artifact folder")
    p.add_argument("--source", action="append", help="restrict to these sources")
    p.set_defaults(fn=cmd_report)
