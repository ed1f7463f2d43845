"""``claims``: the claim table of the last ``pytest claims`` run, read from its status file."""

from __future__ import annotations

import argparse

from harness.text import printable

__all__ = ["cmd_claims", "register"]


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.cli.claimtable import render_claim_table

    print(printable(render_claim_table(args.status, markdown=args.markdown), keep_newlines=True))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("claims", help="print the claim table with the last run's status per source")
    p.add_argument(
        "--status", default="out/claims_status.json", help="status file written by pytest claims"
    )
    p.add_argument("--markdown", action="store_true", help="markdown table")
    p.set_defaults(fn=cmd_claims)
