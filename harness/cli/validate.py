"""``validate`` (a folder of result files) and ``validate-protocol`` (a protocol file)."""

from __future__ import annotations

import argparse

from harness.cli.common import (
    dirs_of,
    protocol_of,
    with_dirs,
    write_json,
)
from harness.errors import HarnessError
from harness.text import printable

__all__ = ["cmd_validate", "cmd_validate_protocol", "register"]


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.analysis.validate import validate

    proto = protocol_of(args)
    eval_path = args.eval
    if eval_path is None:
        try:
            eval_path = proto.eval_path(args.artifact)
        except HarnessError:
            eval_path = None
    report = validate(
        dirs_of(args), proto, include_strict=args.include_strict_matched, eval_path=eval_path
    )
    for c in report.checks:
        tag = "PASS" if c.passed else ("FAIL" if c.blocking else "NOTE")
        kind = "blocking" if c.blocking else "advisory"
        print(printable(f"[{tag}] {c.name} ({kind}): {c.detail}"))
    verdict = "passed" if report.blocking_passed else "FAILED"
    print(
        f"\n{report.present_files} of {report.expected_files} expected files present; blocking checks {verdict}."
    )
    write_json(args.json, report.to_json())
    return 0 if report.blocking_passed else 1


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


def register(sub: argparse._SubParsersAction) -> None:
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
    p = sub.add_parser(
        "validate-protocol", help="list every problem of a protocol file (exit 1 if any)"
    )
    p.add_argument("protocol", help="paper, mini, or a path to a .toml")
    p.set_defaults(fn=cmd_validate_protocol)
