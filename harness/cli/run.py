"""``python -m harness run``: run a protocol and write result files (the model half's CLI).

``register(subparsers)`` adds the ``run`` sub-command to the dispatcher (``harness.cli``);
``python -m harness.cli.run ...`` runs the same command on its own.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from harness.errors import HarnessError, report_errors
from harness.text import ArgumentParser, log_handler, printable

__all__ = ["cmd_run", "main", "register"]

log = logging.getLogger(__name__)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _batch_size_arg(value: str) -> int | str:
    """``--batch-size``: a positive integer or ``auto``."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'auto', got {value!r}") from None


def _list_arg(values: Sequence[str] | None) -> list[str] | None:
    """``--x a,b --x c`` or ``--x a b`` -> ``[a, b, c]``; absent -> None."""
    if not values:
        return None
    out: list[str] = []
    for v in values:
        out.extend(_csv(v))
    return out


def _configure(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--protocol", default="paper", help="paper, mini, or a path to a .toml")
    p.add_argument("--out", required=True, help="output folder for the result files")
    p.add_argument(
        "--conditions",
        nargs="+",
        metavar="NAME",
        help="conditions to run (comma or space separated; 'all' adds the appendix); "
        "default: the protocol's conditions, the strict controls and its extension conditions",
    )
    p.add_argument(
        "--no-extension",
        action="store_true",
        help="leave out the protocol's extension conditions (beyond the paper: causal_*)",
    )
    p.add_argument("--seeds", nargs="+", metavar="SEED", help="seeds (default: the protocol's)")
    p.add_argument(
        "--directions", nargs="+", metavar="DIR", help="fwd and/or rev (default: the protocol's)"
    )
    p.add_argument("--limit", type=int, help="only the first N eval rows (smoke runs)")
    p.add_argument("--train-limit", type=int, help="at most N translator training prompts")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--init",
        choices=("pretrained", "random"),
        default="pretrained",
        help="pretrained weights (local folder or HF cache) or seeded random weights",
    )
    p.add_argument(
        "--tokenizer",
        help="tokenizer folder (needed with --init random unless the mini tokenizer is present)",
    )
    p.add_argument(
        "--batch-size",
        type=_batch_size_arg,
        help="generation batch size, or 'auto': the largest that fits the GPU's free memory "
        "(default: the protocol's; results do not depend on it)",
    )
    p.add_argument("--artifact", help="paper artifact folder (for artifact: paths)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice; 1 is often fastest on a busy CPU)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``run`` on a sub-parser collection; the handler is ``args.fn``."""
    p = subparsers.add_parser(
        "run",
        help="run a protocol (models, injection, generation) and "
        "write result files in the artifact's schema",
    )
    _configure(p)
    p.set_defaults(fn=cmd_run)
    return p


def cmd_run(args: argparse.Namespace) -> int:
    """Handler of ``run``: prints the written files' folder and the wall time."""
    from harness.model.devices import check_settings
    from harness.protocol import load_protocol
    from harness.run.runner import RunOptions, run_protocol
    from harness.spec.rules import seed_problems

    check_settings(args.device, args.threads)  # before any work: the machine must run it
    proto = load_protocol(args.protocol)
    conditions = _list_arg(args.conditions)
    include_appendix = False
    if conditions == ["all"]:
        conditions, include_appendix = None, True
    seeds = _list_arg(args.seeds)
    try:
        seed_ints = [int(s) for s in seeds] if seeds else None
    except ValueError:
        raise HarnessError(
            f"--seeds must be integers, got {seeds}", "e.g. --seeds 42,123"
        ) from None
    if seed_ints is not None and seed_problems(seed_ints, "--seeds"):
        raise HarnessError(
            f"--seeds must be unique integers in [0, 2^32), got {seeds}", "e.g. --seeds 42,123"
        )
    for name, value in (
        ("--limit", args.limit),
        ("--batch-size", None if args.batch_size == "auto" else args.batch_size),
        ("--train-limit", args.train_limit),
    ):
        if value is not None and value < 1:
            raise HarnessError(f"{name} must be at least 1, got {value}")
    t0 = time.perf_counter()
    options = RunOptions(
        conditions=tuple(conditions) if conditions else None,
        seeds=tuple(seed_ints) if seed_ints else None,
        directions=tuple(_list_arg(args.directions) or ()) or None,
        limit=args.limit,
        device=args.device,
        init=args.init,
        tokenizer=args.tokenizer,
        batch_size=args.batch_size,
        artifact=args.artifact,
        train_limit=args.train_limit,
        include_appendix=include_appendix,
        include_extension=not args.no_extension,
        progress=not args.no_progress,
        threads=args.threads,
        share_jobs=True,  # another `run` on the same --out splits the files with this one
    )
    paths = run_protocol(proto, args.out, options)
    sys.stdout.write(
        printable(f"{len(paths)} result files in {args.out} ({time.perf_counter() - t0:.1f} s)")
        + "\n"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m harness.cli.run --protocol ... --out ...``."""
    parser = _configure(ArgumentParser(prog="python -m harness.cli.run"))
    parser.add_argument("--debug", action="store_true", help="tracebacks and INFO logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.debug else logging.WARNING,
        handlers=[log_handler("%(levelname)s %(name)s: %(message)s")],
    )
    return report_errors(lambda: cmd_run(args), debug=args.debug)


if __name__ == "__main__":
    raise SystemExit(main())
