"""The paper's stated numbers, by kind of source (issue #27, item 1).

- ``published``: the paper's own artifact. A stated number must equal the published table
  (``harness.analysis.published``, never our own output) at the stated 4 decimals, and our
  computation from the artifact's rows must reproduce the table at that precision (percentile
  bootstrap CI bounds: within :func:`bootstrap_bound_tolerance`, since our random stream is
  not the authors').
- ``rerun``: our runner on a protocol whose identity is the paper's (same sender, receiver,
  relative depth, so the same blocks, and the same clean-eval hash; ``pythia``, or any TOML
  naming them). Within sampling error: the rerun's rows are paired with the artifact's and
  the number may differ from the published one by at most ``z`` standard errors of the
  paired difference (:func:`harness.analysis.published.rerun_gap`), ``z`` Bonferroni-corrected
  over the numbers one claim checks at once (95% family-wise).
- ``other``: any other pair or eval set; skipped: the paper's numbers are measurements of
  Pythia-160M -> Pythia-410M on its clean eval, not predictions for another pair.
"""

from __future__ import annotations

import functools
import statistics

import pytest

from harness.analysis.published import (
    PublishedComparison,
    PublishedTables,
    bootstrap_bound_tolerance,
    published_tables,
    rerun_gap,
)
from harness.analysis.results import ResultFile
from harness.analysis.tables import ComparisonRow, paired_deltas, run_scores
from harness.sources import Source, load_source

PAPER_SENDER = "EleutherAI/pythia-160m"
PAPER_RECEIVER = "EleutherAI/pythia-410m"
PAPER_DEPTH = 0.67
PAPER_EVAL_SHA256 = "504e077cf17433e22967c86e98d321532d4e803dbe24d96af14c7e8ecdd0dcbb"


def source_kind(source: Source) -> str:
    """``published``, ``rerun`` or ``other`` (see the module docstring)."""
    if "artifact" in source.meta:
        return "published"
    p = source.protocol
    same = (
        p.models.sender == PAPER_SENDER
        and p.models.receiver == PAPER_RECEIVER
        and p.models.relative_depth == PAPER_DEPTH
        and p.eval.sha256 == PAPER_EVAL_SHA256
    )
    return "rerun" if same else "other"


def stated_kind(source: Source) -> str:
    """The kind of ``source``; skips an ``other`` source with the reason."""
    kind = source_kind(source)
    if kind == "other":
        p = source.protocol
        pytest.skip(
            f"{source.name} runs {p.models.sender} -> {p.models.receiver} on eval "
            f"{p.eval.sha256[:12]}...: the paper's stated numbers are measurements of "
            f"{PAPER_SENDER} -> {PAPER_RECEIVER} on its clean eval, not predictions for "
            "another protocol"
        )
    return kind


def tables() -> PublishedTables:
    return published_tables()


@functools.cache
def _reference() -> Source:
    return load_source("paper")


def reference_runs(condition: str) -> list[ResultFile]:
    """The artifact's runs of ``condition`` (fwd): what a rerun's rows are paired with."""
    return _reference().results.runs(condition)


def at4(x: float) -> float:
    """``x`` at the paper's stated precision."""
    return round(x, 4)


def run_accuracies(files: list[ResultFile], metric: str) -> list[float]:
    """Each run's accuracy on ``metric`` (Table 1's per-run values)."""
    return [sum(run_scores(f, metric).values()) / max(f.n, 1) for f in files]


def mean_problem(
    source: Source, kind: str, condition: str, metric: str, published: float, z: float
) -> str | None:
    """Why ``source``'s mean of ``condition`` on ``metric`` is not the published one (None: it
    is): equal at 4 decimals on the artifact, within ``z`` paired standard errors on a rerun."""
    runs = source.results.runs(condition)
    if not runs:
        return f"{condition}: no runs"
    got = statistics.fmean(run_accuracies(runs, metric))
    if kind == "published":
        if at4(got) != at4(published):
            return f"{condition} {metric} mean {got:.4f}, published {published:.4f}"
        return None
    gap = rerun_gap(runs, reference_runs(condition), metric)
    if not gap.within(got, published, z):
        return (
            f"{condition} {metric} mean {got:.4f}, published {published:.4f}: "
            f"|difference| > {z:.2f} x {gap.se:.4f} (paired SE over {gap.n} samples)"
        )
    return None


def comparison_problems(
    source: Source,
    kind: str,
    row: ComparisonRow,
    published: PublishedComparison,
    z: float,
    *,
    bounds: bool = True,
) -> list[str]:
    """Why a paired comparison of ``source`` is not the published one: delta (and pair count,
    and gained / lost per run on the artifact) at 4 decimals, CI bounds within the bootstrap
    tolerance; on a rerun, delta and bounds within ``z`` paired standard errors of the delta
    (plus the bootstrap tolerance for the bounds), pair count exact."""
    name = f"{row.condition} vs {row.baseline}"
    deltas, _ = paired_deltas(source.results, row.condition, row.baseline, row.metric)
    sd = statistics.pstdev(deltas.tolist()) if deltas.size else 0.0
    btol = bootstrap_bound_tolerance(max(row.n_pairs, 1), sd)
    out = []
    if row.n_pairs != published.n_pairs:
        out.append(f"{name}: {row.n_pairs} pairs, published {published.n_pairs}")
    if kind == "published":
        got = (at4(row.delta), at4(row.gained), at4(row.lost))
        want = (at4(published.delta), at4(published.gained), at4(published.lost))
        if got != want:
            out.append(f"{name}: delta, gained, lost {got}, published {want}")
        slack = [(row.ci_low, published.ci_low), (row.ci_high, published.ci_high)]
        if bounds and any(abs(a - b) > btol for a, b in slack):
            out.append(
                f"{name}: CI [{row.ci_low:+.4f}, {row.ci_high:+.4f}], published "
                f"[{published.ci_low:+.4f}, {published.ci_high:+.4f}] (tolerance {btol:.4f})"
            )
        return out
    gap = rerun_gap(
        source.results.runs(row.condition),
        reference_runs(row.condition),
        row.metric,
        rerun_baseline=source.results.runs(row.baseline),
        reference_baseline=reference_runs(row.baseline),
    )
    if not gap.within(row.delta, published.delta, z):
        out.append(
            f"{name}: delta {row.delta:+.4f}, published {published.delta:+.4f}: |difference| > "
            f"{z:.2f} x {gap.se:.4f} (paired SE over {gap.n} samples)"
        )
    if bounds:
        for got, want in ((row.ci_low, published.ci_low), (row.ci_high, published.ci_high)):
            if abs(got - want) > z * gap.se + btol:
                out.append(f"{name}: CI bound {got:+.4f}, published {want:+.4f}")
    return out
