"""``python -m harness sweep SWEEP.toml``: the sweep's picture from the last claims run;
``sweep run SWEEP.toml``: compute its points; ``sweep bench SWEEP.toml``: time that locally
and on a Ray cluster.

The picture prints the claims x points matrix and each point's no-injection accuracy and
paired deltas, and writes the matrix, the numbers and the figures to ``out/<sweep>/``. It
never computes a point: run ``pytest claims --source SWEEP.toml`` first (``make sweep`` does
both), or fill the cache beforehand with ``sweep run`` (``--engine local`` or ``ray``,
:mod:`harness.sweep.engine`), which the claims then read.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["ACTIONS", "add_sweep_parser", "cmd_sweep", "point_lines"]

ACTIONS = ("run", "bench")  # sweep run SWEEP / sweep bench SWEEP; else sweep SWEEP (picture)
_RUN_ONLY = ("engine", "address", "device", "cpus_per_task", "worker_cache", "points")


def point_lines(data: list) -> list[str]:
    """One line per point: no-injection accuracy and each condition's delta vs it (pp)."""
    out = []
    for d in data:
        if d.missing:
            out.append(f"  {d.point.label}: {d.missing}")
            continue
        base = d.accuracy.get("no_inject")
        parts = [f"no_inject {100 * base:.2f}%" if base is not None else "no_inject -"]
        for cond, (v, lo, hi) in d.delta.items():
            parts.append(f"{cond} {100 * v:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]")
        out.append(f"  {d.point.label}: " + "; ".join(parts))
    return out


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.spec.sweep import load_sweep

    if args.sweep in ACTIONS:
        if args.target is None:
            raise HarnessError(
                f"sweep {args.sweep}: which sweep?", f"sweep {args.sweep} SWEEP.toml"
            )
        return _cmd_run(args) if args.sweep == "run" else _cmd_bench(args)
    if args.target is not None:
        raise HarnessError(
            f"sweep {args.sweep} {args.target}: unknown action {args.sweep!r}",
            f"use one of: {', '.join(ACTIONS)}, or name only the sweep (its picture)",
        )
    given = [o for o in _RUN_ONLY if getattr(args, o) not in (None, False)]
    if given:
        raise HarnessError(
            f"--{given[0].replace('_', '-')} is an option of 'sweep run' and 'sweep bench'",
            f"python -m harness sweep run {args.sweep} --{given[0].replace('_', '-')} ...",
        )
    from harness.sweep.picture import point_data, render_matrix, write_picture
    from harness.text import printable

    sweep = load_sweep(args.sweep)
    out = args.out or f"out/{sweep.name}"
    status = args.status or f"{out}/claims_status.json"
    print(printable(render_matrix(sweep, status, markdown=args.markdown), keep_newlines=True))
    print("\npaired deltas vs no-injection, word-boundary accuracy, pp [95% CI]:")
    for line in point_lines(point_data(sweep)):
        print(printable(line))
    for path in write_picture(sweep, status, out):
        print(f"wrote {printable(str(path))}")
    return 0


def _devices(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(d.strip() for d in (args.device or "cpu").split(",") if d.strip())


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.spec.sweep import load_sweep
    from harness.sweep.engine import run_sweep
    from harness.text import printable

    sweep = _selected(load_sweep(args.target), args.points)
    print(f"sweep {sweep.name}: {len(sweep.points)} points, engine {args.engine or 'local'}")
    run = run_sweep(
        sweep,
        engine=args.engine or "local",
        devices=_devices(args),
        address=args.address,
        cpus_per_task=args.cpus_per_task or 1,
        worker_cache=args.worker_cache,
        on_point=lambda o: print(printable(o.line()), flush=True),
    )
    print(printable(run.lines()[0]))
    return 1 if run.failed else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from harness.spec.sweep import load_sweep
    from harness.sweep.engine import bench_sweep
    from harness.text import printable

    sweep = _selected(load_sweep(args.target), args.points)
    for line in bench_sweep(
        sweep,
        devices=_devices(args),
        address=args.address,
        cpus_per_task=args.cpus_per_task or 1,
    ):
        print(printable(line), flush=True)
    return 0


def _selected(sweep: Any, points: str | None) -> Any:
    """The sweep restricted to the points ``--points a,b`` names (all when None)."""
    import dataclasses

    if not points:
        return sweep
    chosen = [sweep.point(label.strip()) for label in points.split(",") if label.strip()]
    return dataclasses.replace(sweep, points=tuple(chosen))


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep",
        help="a sweep's claims x points matrix and figures (run pytest claims first); "
        "'sweep run SWEEP' computes its points (--engine local|ray), 'sweep bench SWEEP' "
        "times both engines",
        usage="%(prog)s [run|bench] SWEEP [options]",
        description="sweep SWEEP: the claims x points matrix and figures of the last claims "
        "run. sweep run SWEEP: compute its points into the result store (--engine local or "
        "ray), which the claims then read. sweep bench SWEEP: the same points from an empty "
        "cache, locally and on the Ray cluster, wall times side by side.",
    )
    p.add_argument("sweep", help="a sweep .toml (or a name under protocols/sweeps/)")
    p.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    p.add_argument(
        "--status", help="claim status file of the run (default: OUT/claims_status.json)"
    )
    p.add_argument("--out", help="output folder (default: out/<sweep name>)")
    p.add_argument("--markdown", action="store_true", help="print the matrix as markdown")
    g = p.add_argument_group("sweep run / sweep bench")
    g.add_argument("--engine", choices=("local", "ray"), help="run: local (default) or ray")
    g.add_argument(
        "--address",
        help="ray: the cluster's address (default: $RAY_ADDRESS, else a cluster started on "
        "this machine with 'ray start', else a new local one)",
    )
    g.add_argument(
        "--device",
        help="local: cpu (default), cuda, or a list (cuda:0,cuda:1: the points split over "
        "them, one process each); ray: cpu or cuda (each task requests one GPU)",
    )
    g.add_argument("--cpus-per-task", type=int, help="ray: CPUs each task requests (default 1)")
    g.add_argument(
        "--worker-cache",
        help="ray: the cache root the tasks use (default: each worker's $HARNESS_CACHE); "
        "result files are returned to this machine's cache either way",
    )
    g.add_argument("--points", help="only these points (comma separated labels)")
    p.set_defaults(fn=cmd_sweep)
    return p
