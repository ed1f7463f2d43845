"""Helpers the result-file commands share: their directories, result set and tables."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.text import printable

__all__ = ["dirs_of", "fmt", "print_table", "protocol_of", "results_of", "with_dirs", "write_json"]


def default_dirs(artifact: str | None) -> list[Path]:
    from harness.sources import paper_result_dirs
    from harness.spec.artifact import locate_artifact

    return paper_result_dirs(locate_artifact(artifact))


def dirs_of(args: argparse.Namespace) -> list[Path]:
    return [Path(d) for d in args.dirs] if args.dirs else default_dirs(args.artifact)


def results_of(args: argparse.Namespace):
    """The result set of ``args.dirs``; refuses an empty set, one mixing eval sets, protocols
    or runs, copies of a run, and rows that do not match the eval set the files name."""
    from harness.analysis.results import ResultSet

    rs = ResultSet.from_dirs(*dirs_of(args))
    rs.check_consistent(protocol_of(args), args.artifact)  # rows against the eval the files name
    return rs


def write_json(path: str | None, obj: Any) -> None:
    if path:
        from harness.io import atomic_write_json

        atomic_write_json(path, obj)


def protocol_of(args: argparse.Namespace):
    from harness.protocol import load_protocol

    return load_protocol(args.protocol)


def fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    rows = [[printable(c) for c in r] for r in rows]  # cells come from files: no raw controls
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def with_dirs(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of every command that reads result directories."""
    p.add_argument("dirs", nargs="*", help="result directories (default: the paper artifact's)")
    p.add_argument(
        "--artifact",
        help="paper artifact folder (default: $HARNESS_ARTIFACT, else the copy shipped in vendor/paper-artifact)",
    )
    p.add_argument(
        "--protocol", default="paper", help="protocol name or TOML path (default: paper)"
    )
    p.add_argument("--json", help="also write machine-readable output here")
    return p
