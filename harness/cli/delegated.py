"""Sub-commands that own their flags: ``bench`` (the benchmark) and ``mini train|evaluate``
(the mini pair's trainer and evaluator). The dispatcher parses only their name and hands every
remaining argument to their own ``main``, so ``python -m harness bench --help`` is the
benchmark's help."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _bench(args: argparse.Namespace) -> int:
    from harness.tools.bench import main_bench

    return int(main_bench(args.rest) or 0)


def _mini(args: argparse.Namespace) -> int:
    from harness.mini import evaluate, train

    entry = train if args.mini_command == "train" else evaluate
    return int(entry.main(args.rest) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", add_help=False, help="performance ratios (python -m harness bench --help)"
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_bench, delegated=True)
    p = sub.add_parser(
        "mini", add_help=False, help="mini pair: 'mini train --help', 'mini evaluate --help'"
    )
    p.add_argument("mini_command", choices=["train", "evaluate"])
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(fn=_mini, delegated=True)
