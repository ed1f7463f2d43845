"""``summarize`` (Table 1) and ``compare`` (Table 3) over result directories."""

from __future__ import annotations

import argparse

from harness.cli.common import (
    fmt,
    print_table,
    protocol_of,
    results_of,
    with_dirs,
    write_json,
)
from harness.errors import HarnessError

__all__ = ["cmd_compare", "cmd_summarize", "register"]


def cmd_summarize(args: argparse.Namespace) -> int:
    from harness.analysis.tables import summarize

    rows = summarize(results_of(args))
    print_table(
        ["condition", "dir", "runs", "n", "word_boundary", "+/-", "legacy", "EM", "norm EM"],
        [
            [
                r.condition,
                r.direction,
                str(r.runs),
                str(r.n),
                fmt(r.means["word_boundary_contains"]),
                fmt(r.stds["word_boundary_contains"]),
                fmt(r.means["legacy_contains"]),
                fmt(r.means["exact_match"]),
                fmt(r.means["normalized_exact_match"]),
            ]
            for r in rows
        ],
    )
    write_json(args.json, {"rows": [r.to_json() for r in rows]})
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import dataclasses
    import math

    from harness.analysis.metrics import METRICS
    from harness.analysis.tables import compare

    stats = protocol_of(args).stats
    unknown = [m for m in args.metric or [] if m not in METRICS]
    if unknown:
        raise HarnessError(f"unknown --metric {unknown[0]!r}", f"use one of: {', '.join(METRICS)}")
    for name in ("tost_low", "tost_high"):
        v = getattr(args, name)
        if v is not None and not math.isfinite(v):
            raise HarnessError(f"--{name.replace('_', '-')} must be a finite number, got {v}")
    low = stats.tost_low if args.tost_low is None else args.tost_low
    high = stats.tost_high if args.tost_high is None else args.tost_high
    if not low < high:
        raise HarnessError(
            f"TOST bounds must satisfy low < high, got [{low}, {high}]",
            "e.g. --tost-low -0.02 --tost-high 0.02",
        )
    if args.tost_low is not None or args.tost_high is not None:
        stats = dataclasses.replace(
            stats,
            tost_low=stats.tost_low if args.tost_low is None else args.tost_low,
            tost_high=stats.tost_high if args.tost_high is None else args.tost_high,
        )
    metrics = tuple(args.metric or ["word_boundary_contains"])
    rows = compare(results_of(args), metrics=metrics, stats=stats)
    print_table(
        [
            "condition",
            "vs",
            "metric",
            "dir",
            "runs",
            "pairs",
            "delta",
            "95% CI",
            "gained",
            "lost",
            "McNemar p",
            "TOST p",
        ],
        [
            [
                r.condition,
                r.baseline,
                r.metric,
                r.direction,
                str(r.runs),
                str(r.n_pairs),
                f"{r.delta:+.4f}",
                f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
                f"{r.gained:.2f}",
                f"{r.lost:.2f}",
                f"{r.mcnemar_p:.3g}",
                f"{r.tost_p:.3g}",
            ]
            for r in rows
        ],
    )
    print(
        f"\nTOST equivalence bounds: [{stats.tost_low:+.3f}, {stats.tost_high:+.3f}]; "
        f"{stats.bootstrap_resamples} percentile-bootstrap resamples per row."
    )
    write_json(args.json, {"rows": [r.to_json() for r in rows]})
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    with_dirs(
        sub.add_parser("summarize", help="per-condition means and stds (Table 1)")
    ).set_defaults(fn=cmd_summarize)
    p = with_dirs(
        sub.add_parser("compare", help="paired deltas vs no_inject and nl_relay (Table 3)")
    )
    p.add_argument(
        "--metric", action="append", help="metric(s) to compare (default word_boundary_contains)"
    )
    p.add_argument(
        "--tost-low", type=float, help="TOST lower equivalence bound (default from protocol)"
    )
    p.add_argument(
        "--tost-high", type=float, help="TOST upper equivalence bound (default from protocol)"
    )
    p.set_defaults(fn=cmd_compare)
