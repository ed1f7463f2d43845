"""``python -m harness <command>``: the result-file half's command line.

Every command takes one or more result directories (default: the paper artifact's
``results/final`` and ``results/final_strict_controls``), prints a readable table and, with
``--json PATH``, writes machine-readable output. Errors are one line and a non-zero exit code
(a traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, report_errors
from harness.text import ArgumentParser, log_handler, printable

__all__ = ["build_parser", "main"]

log = logging.getLogger("harness")


def _default_dirs(artifact: str | None) -> list[Path]:
    from harness.analysis.artifact import locate_artifact

    root = locate_artifact(artifact)
    return [root / "results" / "final", root / "results" / "final_strict_controls"]


def _dirs(args: argparse.Namespace) -> list[Path]:
    return [Path(d) for d in args.dirs] if args.dirs else _default_dirs(args.artifact)


def _results(args: argparse.Namespace):
    """The result set of ``args.dirs``; refuses an empty set, one mixing eval sets, protocols
    or runs, copies of a run, and rows that do not match the eval set the files name."""
    from harness.analysis.results import ResultSet

    rs = ResultSet.from_dirs(*_dirs(args))
    rs.check_consistent(_protocol(args), args.artifact)  # rows against the eval the files name
    return rs


def _write_json(path: str | None, obj: Any) -> None:
    if path:
        from harness.io import atomic_write_json

        atomic_write_json(path, obj)


def _protocol(args: argparse.Namespace):
    from harness.protocol import load_protocol

    return load_protocol(args.protocol)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    rows = [[printable(c) for c in r] for r in rows]  # cells come from files: no raw controls
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def cmd_summarize(args: argparse.Namespace) -> int:
    from harness.analysis.tables import summarize

    rows = summarize(_results(args))
    _print_table(
        ["condition", "dir", "runs", "n", "word_boundary", "+/-", "legacy", "EM", "norm EM"],
        [
            [
                r.condition,
                r.direction,
                str(r.runs),
                str(r.n),
                _fmt(r.means["word_boundary_contains"]),
                _fmt(r.stds["word_boundary_contains"]),
                _fmt(r.means["legacy_contains"]),
                _fmt(r.means["exact_match"]),
                _fmt(r.means["normalized_exact_match"]),
            ]
            for r in rows
        ],
    )
    _write_json(args.json, {"rows": [r.to_json() for r in rows]})
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import dataclasses
    import math

    from harness.analysis.metrics import METRICS
    from harness.analysis.tables import compare

    stats = _protocol(args).stats
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
    rows = compare(_results(args), metrics=metrics, stats=stats)
    _print_table(
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
    _write_json(args.json, {"rows": [r.to_json() for r in rows]})
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.analysis.validate import validate

    proto = _protocol(args)
    eval_path = args.eval
    if eval_path is None:
        try:
            eval_path = proto.eval_path(args.artifact)
        except HarnessError:
            eval_path = None
    report = validate(
        _dirs(args), proto, include_strict=args.include_strict_matched, eval_path=eval_path
    )
    for c in report.checks:
        tag = "PASS" if c.passed else ("FAIL" if c.blocking else "NOTE")
        kind = "blocking" if c.blocking else "advisory"
        print(printable(f"[{tag}] {c.name} ({kind}): {c.detail}"))
    verdict = "passed" if report.blocking_passed else "FAILED"
    print(
        f"\n{report.present_files} of {report.expected_files} expected files present; blocking checks {verdict}."
    )
    _write_json(args.json, report.to_json())
    return 0 if report.blocking_passed else 1


def cmd_audit(args: argparse.Namespace) -> int:
    from harness.analysis.audit import audit, label_counts

    proto = _protocol(args)
    rows = audit(
        _results(args),
        proto.audit.conditions,
        per_file=args.per_file or proto.audit.per_file,
    )
    counts = label_counts(rows)
    _print_table(
        ["file", "label", "gold", "prediction"],
        [[r.file, r.label, r.gold, r.prediction.replace("\n", " ")[:60]] for r in rows],
    )
    print(
        printable(
            f"\n{len(rows)} rows: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
            keep_newlines=True,
        )
    )
    _write_json(args.json, {"rows": [r.to_json() for r in rows], "label_counts": counts})
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from harness.analysis.audit import audit
    from harness.analysis.figures import write_figures
    from harness.analysis.tables import compare, summarize

    proto = _protocol(args)
    rs = _results(args)
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


def cmd_validate_protocol(args: argparse.Namespace) -> int:
    from harness.protocol import load_protocol, protocol_problems

    proto = load_protocol(args.protocol, check=False)
    problems = protocol_problems(proto)
    for line in problems:
        print(printable(f"problem: {line}"))
    print(
        printable(
            f"{args.protocol}: {len(problems)} problem(s)"
            if problems
            else f"{args.protocol}: valid"
        )
    )
    return 1 if problems else 0


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.analysis.claimtable import render_claim_table

    print(printable(render_claim_table(args.status, markdown=args.markdown), keep_newlines=True))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.analysis.report import write_report

    for line in write_report(args.out, artifact=args.artifact, sources=args.source):
        print(printable(line))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m harness", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_dirs(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
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
    p = with_dirs(
        sub.add_parser(
            "validate", help="completeness and consistency report; exit 1 on blocking failure"
        )
    )
    p.add_argument(
        "--include-strict-matched",
        action="store_true",
        help="expect the 3 strict matched shuffle files",
    )
    p.add_argument("--eval", help="eval JSONL to hash-check (default: the protocol's)")
    p.set_defaults(fn=cmd_validate)
    p = with_dirs(sub.add_parser("audit", help="metric-disagreement audit (Appendix D)"))
    p.add_argument("--per-file", type=int, help="rows per result file (default from protocol)")
    p.set_defaults(fn=cmd_audit)
    p = with_dirs(sub.add_parser("figures", help="write figures 2-6 as PNG"))
    p.add_argument("--out", default="out/figures", help="output folder")
    p.add_argument("--source", help="label for figure titles")
    p.set_defaults(fn=cmd_figures)
    p = sub.add_parser("fetch-artifact", help="download the paper artifact and verify its hashes")
    p.add_argument("dest", help="destination folder")
    p.add_argument("--base-url", help="alternative base URL (mirror) holding the repository layout")
    p.set_defaults(fn=cmd_fetch)
    p = sub.add_parser(
        "validate-protocol", help="list every problem of a protocol file (exit 1 if any)"
    )
    p.add_argument("protocol", help="paper, mini, or a path to a .toml")
    p.set_defaults(fn=cmd_validate_protocol)
    p = sub.add_parser("claims", help="print the claim table with the last run's status per source")
    p.add_argument(
        "--status", default="out/claims_status.json", help="status file written by pytest claims"
    )
    p.add_argument("--markdown", action="store_true", help="markdown table")
    p.set_defaults(fn=cmd_claims)
    p = sub.add_parser(
        "report", help="tables, validation, audit and figures for every available source"
    )
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--artifact", help="paper artifact folder")
    p.add_argument("--source", action="append", help="restrict to these sources")
    p.set_defaults(fn=cmd_report)
    sub.add_parser("bench", help="performance ratios (python -m harness bench --help)")
    try:
        from harness.run.cli import add_run_parser
    except ImportError:  # the model half is optional for the result-file half
        pass
    else:
        add_run_parser(sub)
    from harness.sweep.cli import add_sweep_parser

    add_sweep_parser(sub)
    try:
        from harness.mini.cli import add_mini_parser
    except ImportError:
        pass
    else:
        add_mini_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # text from models may hold lone surrogates
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    if argv[:1] == ["bench"]:  # the benchmark has its own parser (python -m harness bench --help)
        from harness.tools.bench import main_bench

        return main_bench(argv[1:])
    if argv[:1] == ["mini"] and argv[1:2] in (["train"], ["evaluate"]):  # own parsers
        from harness.mini import evaluate, train

        return int((train if argv[1] == "train" else evaluate).main(argv[2:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
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
    if getattr(args, "out", None) and args.fn is not cmd_fetch:
        check_output_dir(args.out, "--out")
    if getattr(args, "eval", None) and not Path(args.eval).is_file():
        raise HarnessError(f"--eval {args.eval}: no such file", "pass the eval JSONL to hash-check")
    return args.fn(args)
