"""``audit``: the metric-disagreement audit (Appendix D)."""

from __future__ import annotations

import argparse

from harness.cli.common import (
    print_table,
    protocol_of,
    results_of,
    with_dirs,
    write_json,
)
from harness.text import printable

__all__ = ["cmd_audit", "register"]


def cmd_audit(args: argparse.Namespace) -> int:
    from harness.analysis.audit import audit, label_counts

    proto = protocol_of(args)
    rows = audit(
        results_of(args),
        proto.audit.conditions,
        per_file=args.per_file or proto.audit.per_file,
    )
    counts = label_counts(rows)
    print_table(
        ["file", "label", "gold", "prediction"],
        [[r.file, r.label, r.gold, r.prediction.replace("\n", " ")[:60]] for r in rows],
    )
    print(
        printable(
            f"\n{len(rows)} rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
            keep_newlines=True,
        )
    )
    write_json(args.json, {"rows": [r.to_json() for r in rows], "label_counts": counts})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = with_dirs(sub.add_parser("audit", help="metric-disagreement audit (Appendix D)"))
    p.add_argument("--per-file", type=int, help="rows per result file (default from protocol)")
    p.set_defaults(fn=cmd_audit)
