"""A sweep's picture: the claims x points matrix, and each condition's paired delta against
the axes (one figure per axis, a heatmap for two axes), from the claim status file and the
points' cached result files. Torch-free; never computes a point (a point not yet run is
drawn as missing, with the reason)."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from harness.analysis.claimstatus import collect_claims, load_status
from harness.io import atomic_write_json, atomic_write_text
from harness.sources import Source
from harness.spec.sweep import Axis, Point, Sweep
from harness.sweep import sealed_results
from harness.text import printable

__all__ = [
    "PointData",
    "headline",
    "matrix_rows",
    "point_data",
    "render_matrix",
    "write_picture",
]

BASELINE = "no_inject"
METRIC = "word_boundary_contains"
_SYMBOL = {"passed": "PASS", "xfail": "finding", "failed": "FAIL", "skipped": "skip"}
_SYMBOL |= {"xpass": "XPASS"}
# the first number of a measured text that is not part of a name (layers.16, h1_...)
_NUMBER = re.compile(r"(?<![\w.@-])[-+]?\d+(?:\.\d+)?(?:\s?pp|%)?(?![\w.])")


def headline(measured: str) -> str:
    """The headline number of a claim's measured text: its first number (with its unit)."""
    m = _NUMBER.search(measured or "")
    return m.group(0).replace(" ", "") if m else ""


def matrix_rows(
    sweep: Sweep, status_path: str | os.PathLike[str]
) -> list[tuple[int, str, list[str]]]:
    """(claim number, claim sentence, one cell per point): ``PASS -74.16pp``, ``finding ...``,
    ``FAIL ...``, ``skip`` or ``-`` (not run), for the claims the status file catalogs."""
    status, _ = load_status(status_path)
    rows = []
    for i, claim in enumerate(collect_claims(status_path), 1):
        per_source = status.get(claim.name, {})
        cells = []
        for p in sweep.points:
            e = per_source.get(p.name)
            if not e:
                cells.append("-")
                continue
            sym = _SYMBOL.get(str(e.get("outcome")), str(e.get("outcome")))
            num = headline(str(e.get("measured") or "")) if sym != "skip" else ""
            cells.append(f"{sym} {num}".strip())
        rows.append((i, claim.sentence, cells))
    return rows


def render_matrix(
    sweep: Sweep, status_path: str | os.PathLike[str], *, markdown: bool = False
) -> str:
    """The claims x points matrix as compact text (or a markdown table), with per-point
    outcome counts; claims every point skipped are left out of the text form."""
    _, latest = load_status(status_path)
    rows = matrix_rows(sweep, status_path)
    labels = [p.label for p in sweep.points]
    if markdown:
        out = ["| # | claim | " + " | ".join(labels) + " |", "|---|---|" + "---|" * len(labels)]
        out += [f"| {i} | {s} | " + " | ".join(c) + " |" for i, s, c in rows]
        return printable("\n".join(out), keep_newlines=True)
    w = max(16, *(len(x) for x in labels))
    out = [f"sweep {sweep.name}: {len(sweep.points)} points x {len(rows)} claims"]
    out.append(f"{'':>3} {'claim':<56} " + " ".join(f"{x:<{w}}" for x in labels))
    for i, s, cells in rows:
        if all(c.startswith(("skip", "-")) for c in cells):
            continue
        text = s if len(s) <= 56 else s[:53] + "..."
        out.append(f"{i:>3} {text:<56} " + " ".join(f"{c[:w]:<{w}}" for c in cells))
    for k, label in enumerate(labels):
        counts: dict[str, int] = {}
        for _, _, cells in rows:
            c = cells[k].split(" ")[0]
            counts[c] = counts.get(c, 0) + 1
        out.append(f"{label:>{w}}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if latest:
        out.append(f"(claims run of {latest}; status file {status_path})")
    return printable("\n".join(out), keep_newlines=True)


@dataclass
class PointData:
    """One point's numbers for the figures: accuracy per condition, and each condition's
    paired delta vs no-injection (delta, CI low, CI high), as proportions (fwd)."""

    point: Point
    accuracy: dict[str, float]
    delta: dict[str, tuple[float, float, float]]
    missing: str = ""


def point_data(sweep: Sweep) -> list[PointData]:
    """Every point's numbers from its sealed cache entry (missing ones say why)."""
    out = []
    for p in sweep.points:
        results = sealed_results(p)
        if results is None:
            out.append(PointData(p, {}, {}, "not computed yet (run pytest claims --source)"))
            continue
        src = Source(p.name, p.protocol, [results], p.protocol.eval_path())
        acc = {c: row.means[METRIC] for c, row in src.summary.items()}
        delta = {
            c: (r.delta, r.ci_low, r.ci_high)
            for (c, b), r in src.comparisons.items()
            if b == BASELINE and r.metric == METRIC
        }
        out.append(PointData(p, acc, delta))
    return out


def _conditions(data: list[PointData]) -> list[str]:
    seen: list[str] = []
    for d in data:
        seen += [c for c in d.delta if c not in seen]
    return seen


def _positions(axis: Axis) -> tuple[list[float], list[str]]:
    if axis.x is not None:
        return list(axis.x), list(axis.labels)
    return [float(i) for i in range(len(axis.values))], list(axis.labels)


def fig_axis(sweep: Sweep, data: list[PointData], axis: Axis, path: Path) -> Path:
    """Accuracy per condition (left) and each condition's paired delta vs no-injection with its
    CI (right) against one axis; one row of panels per combination of the other axes."""
    others = [a for a in sweep.axes if a is not axis]
    combos = list(itertools.product(*(range(len(a.values)) for a in others))) or [()]
    conds = _conditions(data)
    xs, ticks = _positions(axis)
    log_x = axis.x is not None and min(xs) > 0 and max(xs) / min(xs) > 20
    fig, axes = plt.subplots(
        len(combos), 2, figsize=(12, 3.8 * len(combos)), squeeze=False, constrained_layout=True
    )
    # strong colours first (tab10), then tab20's light ones for an eleventh condition on
    palette = [*plt.get_cmap("tab10").colors, *plt.get_cmap("tab20").colors[1::2]]  # type: ignore[attr-defined]  # ListedColormap has .colors; get_cmap's stub says Colormap
    for row, combo in enumerate(combos):
        fixed = {a.key: a.values[i] for a, i in zip(others, combo, strict=True)}
        sel = [d for d in data if all(d.point.value(k) == v for k, v in fixed.items())]
        by_x = {axis.values.index(d.point.value(axis.key)): d for d in sel}
        acc_ax, d_ax = axes[row]
        for ci, cond in enumerate([BASELINE, *conds]):
            pts = [(xs[i], by_x[i]) for i in sorted(by_x) if cond in by_x[i].accuracy]
            if pts:
                acc_ax.plot(
                    [x for x, _ in pts],
                    [100 * d.accuracy[cond] for _, d in pts],
                    marker="o",
                    color="black" if cond == BASELINE else palette[(ci - 1) % len(palette)],
                    lw=2.4 if cond == BASELINE else 1.2,
                    label=cond,
                )
            if cond == BASELINE:
                continue
            dpts = [(xs[i], by_x[i].delta[cond]) for i in sorted(by_x) if cond in by_x[i].delta]
            if dpts:
                x = [p for p, _ in dpts]
                y = [100 * v[0] for _, v in dpts]
                err = [
                    [100 * (v[0] - v[1]) for _, v in dpts],
                    [100 * (v[2] - v[0]) for _, v in dpts],
                ]
                d_ax.errorbar(
                    x,
                    y,
                    yerr=err,
                    marker="o",
                    capsize=3,
                    color=palette[(ci - 1) % len(palette)],
                    lw=1.2,
                    label=cond,
                )
        d_ax.axhline(0, color="black", lw=0.8)
        where = ", ".join(f"{a.short}={a.labels[i]}" for a, i in zip(others, combo, strict=True))
        acc_ax.set_title(f"word-boundary accuracy{' (' + where + ')' if where else ''}")
        d_ax.set_title(f"paired delta vs no-injection, 95% CI{' (' + where + ')' if where else ''}")
        acc_ax.set_ylabel("accuracy (%)")
        d_ax.set_ylabel("delta (pp)")
        for a in (acc_ax, d_ax):
            if log_x:
                a.set_xscale("log")
            a.set_xticks(
                xs, ticks, rotation=40 if max(len(t) for t in ticks) > 6 else 0, fontsize=7
            )
            a.minorticks_off()
            a.set_xlabel(axis.title or axis.key)
            a.grid(alpha=0.3)
        missing = [d.point.label for d in sel if d.missing]
        if missing:
            acc_ax.text(
                0.01,
                0.01,
                "not computed: " + ", ".join(missing),
                transform=acc_ax.transAxes,
                fontsize=7,
            )
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="outside right upper")
    fig.suptitle(f"sweep {sweep.name}: {axis.title or axis.key}", fontsize=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig_heatmap(sweep: Sweep, data: list[PointData], a: Axis, b: Axis, path: Path) -> Path:
    """One heatmap per condition: its paired delta vs no-injection (pp) over axes ``a`` (rows)
    x ``b`` (columns), the CI crossing zero marked ``~``; the no-injection accuracy first."""
    conds = [BASELINE, *_conditions(data)]
    # one symmetric colour scale for every delta panel, so colours compare across conditions
    lim = max([abs(100 * v[0]) for d in data for v in d.delta.values()] or [1.0]) or 1.0
    ncol = min(4, len(conds))
    nrow = -(-len(conds) // ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False, constrained_layout=True
    )
    for k, cond in enumerate(conds):
        ax = axes[k // ncol][k % ncol]
        grid = [[float("nan")] * len(b.values) for _ in a.values]
        marks = [[""] * len(b.values) for _ in a.values]
        for d in data:
            i, j = a.values.index(d.point.value(a.key)), b.values.index(d.point.value(b.key))
            if cond == BASELINE and cond in d.accuracy:
                grid[i][j] = 100 * d.accuracy[cond]
                marks[i][j] = f"{grid[i][j]:.1f}"
            elif cond in d.delta:
                v, lo, hi = d.delta[cond]
                grid[i][j] = 100 * v
                marks[i][j] = f"{100 * v:+.1f}{'~' if lo <= 0 <= hi else ''}"
        im = ax.imshow(
            grid, cmap="viridis" if cond == BASELINE else "RdBu", aspect="auto", origin="lower"
        )
        if cond != BASELINE:
            im.set_clim(-lim, lim)
        for i, j in itertools.product(range(len(a.values)), range(len(b.values))):
            dark = cond != BASELINE and abs(grid[i][j]) > 0.6 * lim
            ax.text(
                j,
                i,
                marks[i][j],
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
        ax.set_xticks(range(len(b.values)), b.labels, fontsize=7)
        ax.set_yticks(range(len(a.values)), a.labels, fontsize=7)
        ax.set_xlabel(b.title or b.key, fontsize=8)
        ax.set_ylabel(a.title or a.key, fontsize=8)
        ax.set_title(
            "no-injection accuracy (%)" if cond == BASELINE else f"{cond} - no_inject (pp)",
            fontsize=9,
        )
        fig.colorbar(im, ax=ax, shrink=0.8)
    for k in range(len(conds), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    fig.suptitle(f"sweep {sweep.name} (~: the 95% CI crosses zero)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_picture(
    sweep: Sweep, status_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """``out_dir``: ``matrix.md``, ``matrix.txt``, ``deltas.json``, ``axis_<key>.png`` per axis
    and ``heatmap_<a>_x_<b>.png`` for each pair of axes. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, md in (("matrix.md", True), ("matrix.txt", False)):
        atomic_write_text(out / name, render_matrix(sweep, status_path, markdown=md) + "\n")
        written.append(out / name)
    data = point_data(sweep)
    atomic_write_json(
        out / "deltas.json",
        {
            "sweep": sweep.name,
            "metric": METRIC,
            "baseline": BASELINE,
            "points": [
                {
                    "point": d.point.label,
                    "protocol_hash": d.point.protocol.hash,
                    "coords": {k: v for k, v in d.point.coords},
                    "missing": d.missing,
                    "accuracy": d.accuracy,
                    "delta_vs_no_inject": {c: list(v) for c, v in d.delta.items()},
                }
                for d in data
            ],
        },
    )
    written.append(out / "deltas.json")
    if all(d.missing for d in data):
        return written
    for axis in sweep.axes:
        written.append(fig_axis(sweep, data, axis, out / f"axis_{axis.short}.png"))
    for a, b in itertools.combinations(sweep.axes, 2):
        written.append(fig_heatmap(sweep, data, a, b, out / f"heatmap_{a.short}_x_{b.short}.png"))
    return written
