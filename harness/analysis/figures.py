"""The paper's figures (2-6) as PNG files, from tables the torch-free half computes."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from harness.analysis.audit import AuditRow, label_counts
from harness.analysis.results import ResultSet
from harness.analysis.tables import ComparisonRow, SummaryRow
from harness.conditions import CONDITIONS, EXTENSION_CONDITIONS, the_condition, with_role
from harness.io import atomic_write_bytes, write_target

__all__ = ["write_figures"]

_NO_INJECT = the_condition("no_injection")
_NEUTRAL, _BASE, _BAD, _EXT = "#7a869a", "#2b6cb0", "#c0392b", "#d69e2e"


def _color(cond: str) -> str:
    """Baselines blue, the paper's transfer conditions grey, extensions (beyond the paper) amber."""
    if cond in with_role("baseline"):
        return _BASE
    c = CONDITIONS.get(cond)
    return _EXT if c is not None and c.group == "extension" else _NEUTRAL


def _label(cond: str) -> str:
    c = CONDITIONS.get(cond)
    return c.label if c else cond


def _save(fig: plt.Figure, path: Path) -> Path:
    """Render ``fig`` to PNG and write it atomically (through a link; never onto a device)."""
    import io

    try:
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=130)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def fig_accuracy(rows: list[SummaryRow], path: Path, title: str) -> Path:
    rows = [r for r in rows if r.direction == "fwd"]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    names = [_label(r.condition) for r in rows]
    means = [r.means["word_boundary_contains"] * 100 for r in rows]
    errs = [(r.stds["word_boundary_contains"] or 0.0) * 100 for r in rows]
    colors = [_color(r.condition) for r in rows]
    ax.bar(names, means, yerr=errs, color=colors, capsize=3)
    base = next(
        (r.means["word_boundary_contains"] * 100 for r in rows if r.condition == _NO_INJECT),
        None,
    )
    if base is not None:
        ax.axhline(base, color=_BASE, ls="--", lw=1, label=f"no injection ({base:.2f}%)")
        ax.legend(frameon=False)
    for i, m in enumerate(means):
        ax.text(i, m + errs[i] + 0.15, f"{m:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylabel("word-boundary accuracy (%)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=35)
    for t in ax.get_xticklabels():
        t.set_horizontalalignment("right")
    return _save(fig, path)


def _delta_point(ax: plt.Axes, r: ComparisonRow, y: float, color: str) -> None:
    """One paired delta with its CI bar and a ``delta [low, high]`` label (pp)."""
    ax.errorbar(
        r.delta * 100,
        y,
        xerr=[[(r.delta - r.ci_low) * 100], [(r.ci_high - r.delta) * 100]],
        fmt="o",
        color=color,
        capsize=3,
    )
    ax.text(
        r.ci_high * 100 + 0.4,
        y,
        f"{r.delta * 100:+.2f} [{r.ci_low * 100:+.2f}, {r.ci_high * 100:+.2f}]",
        va="center",
        fontsize=7,
    )


def _delta_axis(ax: plt.Axes, rows: list[ComparisonRow]) -> None:
    """The zero line and x limits with room for the value labels."""
    ax.axvline(0, color="black", lw=0.8)
    lo = min((r.ci_low for r in rows), default=-0.1) * 100
    hi = max((r.ci_high for r in rows), default=0.1) * 100
    span = max(hi - lo, 1.0)
    ax.set_xlim(lo - 0.05 * span, hi + 0.45 * span)


def fig_deltas(rows: list[ComparisonRow], baseline: str, path: Path, title: str) -> Path:
    rows = [
        r
        for r in rows
        if r.baseline == baseline and r.direction == "fwd" and r.metric == "word_boundary_contains"
    ]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.4))
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows, strict=True):
        _delta_point(ax, r, yi, _BAD if r.ci_high < 0 else (_BASE if r.ci_low > 0 else _NEUTRAL))
    _delta_axis(ax, rows)
    ax.set_yticks(y, [f"{_label(r.condition)} (n={r.n_pairs})" for r in rows])
    ax.set_xlabel(f"paired word-boundary delta vs {_label(baseline)} (pp, 95% bootstrap CI)")
    ax.set_title(title)
    return _save(fig, path)


def _log_mean(xs: list[float]) -> float | None:
    """Mean of the finite, positive values (what a log axis can show), None if none; it cannot
    overflow (each term is divided first), and a mean past 1e300 is not drawn either."""
    good = [float(x) for x in xs if math.isfinite(x) and x > 0]
    if not good:
        return None
    m = math.fsum(x / len(good) for x in good)
    return m if 0 < m < 1e300 else None


def fig_norms(results: ResultSet, path: Path, title: str) -> Path:
    keys = ("translated_norm_mean", "b_hidden_norm_mean", "injected_norm_mean")
    legend = ("translated (uncorrected)", "receiver native", "injected")
    conds: list[str] = []
    vals: list[list[float | None]] = []
    for cond in results.conditions("fwd"):
        runs = results.runs(cond, "fwd")
        per: list[float | None] = []
        for k in keys:
            xs = [r.get(k) for run in runs for r in run.per_sample]
            per.append(_log_mean([x for x in xs if isinstance(x, (int, float))]))
        if per[1] is not None:
            conds.append(cond)
            vals.append(per)
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    width = 0.27
    for j, name in enumerate(legend):
        pos = [i + (j - 1) * width for i in range(len(conds))]
        pts: list[tuple[float, float]] = [  # zeros and missing norms cannot be drawn on log
            (x, y) for x, v in zip(pos, vals, strict=True) if (y := v[j])
        ]
        ax.bar([x for x, _ in pts], [y for _, y in pts], width, label=name)
        for x, yv in pts:
            ax.text(x, yv * 1.3, f"{yv:.3g}", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_yscale("log")
    ax.set_ylim(top=ax.get_ylim()[1] * 20)
    ax.set_xticks(range(len(conds)), [_label(c) for c in conds], rotation=35, ha="right")
    ax.set_ylabel("mean L2 norm over prompt positions (log)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, ncols=3, loc="upper left")
    ax.set_xlabel(
        "zero norms (zero replacement) cannot be drawn on the log axis", fontsize=7, color="gray"
    )
    return _save(fig, path)


def fig_audit(rows: list[AuditRow], path: Path, title: str) -> Path:
    counts = label_counts(rows)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    names = [k.replace("_", " ") for k in counts]
    bars = ax.bar(names, list(counts.values()), color=[_BASE, _NEUTRAL, _BAD])
    for b, v in zip(bars, counts.values(), strict=True):
        ax.text(b.get_x() + b.get_width() / 2, v + 0.3, str(v), ha="center")
    ax.set_ylabel("rows (legacy contains, not normalised EM)")
    ax.set_title(title)
    return _save(fig, path)


def fig_causal(
    results: ResultSet, comparisons: list[ComparisonRow], path: Path, title: str
) -> Path:
    """The causal translator (beyond the paper): held-out answer NLL while it trains, per seed
    and mode, against the clean receiver; and eval deltas vs no injection, linear vs causal."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    clean = None
    for cond, ls, color in (("causal_replace", "-", _EXT), ("causal_additive", "--", "#8c5a0b")):
        for f in results.runs(cond, "fwd"):
            t = f.raw.get("translator") or {}
            hist = t.get("val_nll_history") or []
            if hist:
                xs, ys = zip(*hist, strict=True)
                ax1.plot(xs, ys, ls, color=color, alpha=0.8, label=f"{_label(cond)} seed {f.seed}")
                clean = t.get("val_answer_nll_no_inject", clean)
    if clean is not None:
        ax1.axhline(clean, color=_BASE, lw=1.2, label=f"no injection ({clean:.3f})")
    ax1.set_yscale("log")
    ax1.set_xlabel("optimiser step")
    ax1.set_ylabel("held-out answer NLL (translator prompts)")
    ax1.set_title("training through the frozen receiver", fontsize=10)
    ax1.legend(frameon=False, fontsize=7)
    pairs = [
        (c.counterpart, n)
        for n, c in CONDITIONS.items()
        if c.counterpart is not None
        and c.plan is not None
        and c.plan.translator == "causal"
        and not c.plan.last_token
    ]
    by = {
        r.condition: r
        for r in comparisons
        if r.baseline == _NO_INJECT
        and r.direction == "fwd"
        and r.metric == "word_boundary_contains"
    }
    y = 0.0
    ticks, labels = [], []
    for lin, cau in pairs:
        for cond, color in ((lin, _NEUTRAL), (cau, _EXT)):
            r = by.get(cond)
            if r is None:
                continue
            _delta_point(ax2, r, y, color)
            ticks.append(y)
            labels.append(f"{_label(cond)} (n={r.n_pairs})")
            y -= 1
        y -= 0.5
    _delta_axis(ax2, [by[c] for pair in pairs for c in pair if c in by])
    ax2.set_yticks(ticks, labels)
    ax2.set_xlabel("paired word-boundary delta vs no injection (pp, 95% CI)")
    ax2.set_title("eval: linear (grey) vs causal (amber) translator", fontsize=10)
    fig.suptitle(title)
    return _save(fig, path)


_FIGURES = (
    "fig2_word_boundary_by_condition.png",
    "fig3_deltas_vs_no_inject.png",
    "fig4_deltas_vs_nl_relay.png",
    "fig5_norm_mismatch.png",
    "fig6_audit_labels.png",
    "fig7_causal_translator.png",
)


def write_figures(
    out_dir: str | os.PathLike[str],
    results: ResultSet,
    summary: list[SummaryRow],
    comparisons: list[ComparisonRow],
    audit_rows: list[AuditRow],
    *,
    source: str = "",
) -> list[Path]:
    """Write fig2..fig6 PNGs into ``out_dir`` (+ fig7 when causal runs exist); their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in _FIGURES:  # a FIFO or device among them is refused before any is drawn
        write_target(out / name, "figure")
    tag = f" [{source}]" if source else ""
    paths = [
        fig_accuracy(
            summary,
            out / "fig2_word_boundary_by_condition.png",
            f"Word-boundary answer containment by condition{tag}",
        ),
        fig_deltas(
            comparisons,
            _NO_INJECT,
            out / "fig3_deltas_vs_no_inject.png",
            f"Paired deltas vs no injection{tag}",
        ),
        fig_deltas(
            comparisons,
            the_condition("relay"),
            out / "fig4_deltas_vs_nl_relay.png",
            f"Paired deltas vs natural-language relay{tag}",
        ),
        fig_norms(results, out / "fig5_norm_mismatch.png", f"Activation norm scale mismatch{tag}"),
        fig_audit(
            audit_rows, out / "fig6_audit_labels.png", f"Metric-disagreement audit labels{tag}"
        ),
    ]
    if any(results.runs(c, "fwd") for c in EXTENSION_CONDITIONS):
        paths.append(
            fig_causal(
                results,
                comparisons,
                out / "fig7_causal_translator.png",
                f"Beyond the paper: a causally trained translator{tag}",
            )
        )
    return paths


def fig_regimes(accuracy: dict[str, dict[str, float]], path: Path) -> Path:
    """Word-boundary accuracy per condition, one bar per regime (source) side by side: the
    paper's conditions in the top panel, those beyond the paper (the ``extension`` group)
    below it, each panel ordered as the registry is.

    ``accuracy``: regime label -> condition -> accuracy (fraction). Conditions a regime does
    not run are left empty.
    """
    conds: list[str] = []
    for per in accuracy.values():
        conds.extend(c for c in per if c not in conds)
    order = list(CONDITIONS)
    conds.sort(key=lambda c: order.index(c) if c in order else len(order))
    beyond = [c for c in conds if c in EXTENSION_CONDITIONS]
    panels = [(p, t) for p, t in (
        ([c for c in conds if c not in beyond], "the paper's conditions"),
        (beyond, "beyond the paper"),
    ) if p]  # fmt: skip
    regimes = list(accuracy)
    width = 0.8 / max(1, len(regimes))
    widest = max(len(p) for p, _ in panels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8, 0.6 * widest + 3), 3.6 * len(panels)), squeeze=False
    )
    palette = ["#2b6cb0", "#d69e2e", "#2f855a", "#805ad5"]
    for ax, (panel, title) in zip(axes[:, 0], panels, strict=True):
        for k, regime in enumerate(regimes):
            xs = [i + (k - (len(regimes) - 1) / 2) * width for i in range(len(panel))]
            vals = [accuracy[regime].get(c) for c in panel]
            ax.bar(
                [x for x, v in zip(xs, vals, strict=True) if v is not None],
                [v * 100 for v in vals if v is not None],
                width,
                label=regime,
                color=palette[k % len(palette)],
            )
        ax.set_xticks(range(len(panel)), [_label(c) for c in panel], rotation=30, ha="right")
        ax.set_xlim(-0.6, widest - 0.4)
        ax.set_ylim(0, 100)
        ax.set_ylabel("word-boundary accuracy (%)")
        ax.set_title(title, fontsize=10, loc="left")
    axes[0, 0].legend(frameon=False, fontsize=8, loc="upper right")
    fig.suptitle("Word-boundary accuracy in each regime, every condition (no bar: not run there)")
    return _save(fig, path)
