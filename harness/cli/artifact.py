"""``fetch-artifact``: download the paper's artifact and verify every hash."""

from __future__ import annotations

import argparse

from harness.errors import HarnessError
from harness.text import printable

__all__ = ["cmd_fetch", "register"]


def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.analysis.artifact import fetch_artifact, verify_artifact

    root = (
        fetch_artifact(args.dest, base_url=args.base_url)
        if args.base_url
        else fetch_artifact(args.dest)
    )
    problems = verify_artifact(root)
    if problems:
        raise HarnessError(f"artifact at {root} failed verification: {problems}")
    print(printable(f"paper artifact ready at {root} (every SHA-256 verified)"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-artifact", help="download the paper artifact and verify its hashes")
    p.add_argument("dest", help="destination folder")
    p.add_argument("--base-url", help="alternative base URL (mirror) holding the repository layout")
    p.set_defaults(fn=cmd_fetch, writes_elsewhere=True)
