"""``python -m harness sweep SWEEP.toml``: the sweep's picture from the last claims run.

Prints the claims x points matrix and each point's no-injection accuracy and paired deltas,
and writes the matrix, the numbers and the figures to ``out/<sweep>/``. Never computes a
point: run ``pytest claims --source SWEEP.toml`` first (``make sweep`` does both).
"""

from __future__ import annotations

import argparse

__all__ = ["add_sweep_parser", "cmd_sweep", "point_lines"]


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
    from harness.spec.sweep import load_sweep
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


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="a sweep's claims x points matrix and figures (run pytest claims first)"
    )
    p.add_argument("sweep", help="a sweep .toml (or a name under protocols/sweeps/)")
    p.add_argument(
        "--status", help="claim status file of the run (default: OUT/claims_status.json)"
    )
    p.add_argument("--out", help="output folder (default: out/<sweep name>)")
    p.add_argument("--markdown", action="store_true", help="print the matrix as markdown")
    p.set_defaults(fn=cmd_sweep)
    return p
