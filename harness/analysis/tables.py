"""The paper's tables from a :class:`ResultSet`: per-condition summary and paired comparisons."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from harness.analysis.metrics import METRICS, PRIMARY_METRIC
from harness.analysis.results import ResultFile, ResultSet
from harness.analysis.stats import label_seed, mcnemar_exact, percentile_bootstrap_ci, tost_paired
from harness.conditions import with_role
from harness.protocol import StatsSpec

__all__ = [
    "BASELINES",
    "SUMMARY_METRICS",
    "ComparisonRow",
    "SummaryRow",
    "compare",
    "pair_baseline",
    "paired_deltas",
    "run_scores",
    "summarize",
]

SUMMARY_METRICS = (
    "exact_match",
    "normalized_exact_match",
    "word_boundary_contains",
    "legacy_contains",
)
BASELINES = with_role("baseline")  # the registry's comparison references, in order
DEFAULT_STATS = StatsSpec(bootstrap_resamples=5000, confidence=0.95, tost_low=-0.02, tost_high=0.02)


def run_scores(run: ResultFile, metric: str = PRIMARY_METRIC) -> dict[str, int]:
    """sample_id -> 0/1 for one metric, recomputed from prediction and gold (memoised)."""
    cached = run.score_cache.get(metric)
    if cached is None:
        fn = METRICS[metric]
        cached = {r["sample_id"]: int(fn(r["prediction"], r["gold"])) for r in run.per_sample}
        run.score_cache[metric] = cached
    return cached


@dataclass(frozen=True)
class SummaryRow:
    condition: str
    direction: str
    runs: int
    n: int
    means: dict[str, float]
    stds: dict[str, float | None]

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "condition": self.condition,
            "direction": self.direction,
            "runs": self.runs,
            "n": self.n,
        }
        for m in self.means:
            out[f"{m}_mean"] = self.means[m]
            out[f"{m}_std"] = self.stds[m]
        return out


def summarize(results: ResultSet, metrics: tuple[str, ...] = SUMMARY_METRICS) -> list[SummaryRow]:
    """Per (condition, direction): runs, n, mean and sample std over runs of each metric."""
    rows = []
    for direction in results.directions():
        for cond in results.conditions(direction):
            runs = results.runs(cond, direction)
            means, stds = {}, {}
            for m in metrics:
                accs = [sum(run_scores(r, m).values()) / max(r.n, 1) for r in runs]
                means[m] = statistics.fmean(accs)
                stds[m] = statistics.stdev(accs) if len(accs) > 1 else None
            ns = {r.n for r in runs}
            rows.append(SummaryRow(cond, direction, len(runs), min(ns), means, stds))
    return rows


@dataclass(frozen=True)
class ComparisonRow:
    condition: str
    baseline: str
    metric: str
    direction: str
    runs: int
    n_pairs: int
    delta: float
    ci_low: float
    ci_high: float
    gained: float
    lost: float
    mcnemar_p: float
    tost_p: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @property
    def crosses_zero(self) -> bool:
        return self.ci_low <= 0.0 <= self.ci_high


def pair_baseline(candidates: Sequence[ResultFile], seed: object) -> ResultFile | None:
    """The baseline run a run of ``seed`` pairs with: the one with the same seed, else the
    only one (a deterministic baseline); None when neither exists."""
    for b in candidates:
        if b.seed == seed:
            return b
    return candidates[0] if len(candidates) == 1 else None


def _baseline_for(
    results: ResultSet, baseline: str, direction: str, run: ResultFile
) -> ResultFile | None:
    return pair_baseline(results.runs(baseline, direction), run.seed)


def paired_deltas(
    results: ResultSet,
    condition: str,
    baseline: str,
    metric: str = PRIMARY_METRIC,
    direction: str = "fwd",
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per-sample deltas (condition - baseline) on shared sample ids, pooled over runs.

    Also returns (gained, lost) per run. The baseline run is the deterministic one, or the
    run with the same seed when the baseline itself is seeded.
    """
    pooled: list[int] = []
    per_run: list[tuple[int, int]] = []
    for run in results.runs(condition, direction):
        base = _baseline_for(results, baseline, direction, run)
        if base is None:
            continue
        a, b = run_scores(run, metric), run_scores(base, metric)
        shared = [sid for sid in a if sid in b]
        d = [a[s] - b[s] for s in shared]
        pooled.extend(d)
        per_run.append((sum(1 for x in d if x > 0), sum(1 for x in d if x < 0)))
    return np.asarray(pooled, dtype=float), per_run


def compare(
    results: ResultSet,
    *,
    baselines: tuple[str, ...] = BASELINES,
    metrics: tuple[str, ...] = (PRIMARY_METRIC,),
    stats: StatsSpec = DEFAULT_STATS,
    directions: tuple[str, ...] | None = None,
) -> list[ComparisonRow]:
    """Paired comparisons of every condition against each baseline present."""
    rows = []
    for direction in directions or tuple(results.directions()):
        for baseline in baselines:
            if not results.runs(baseline, direction):
                continue
            for cond in results.conditions(direction):
                if cond == baseline:
                    continue
                for metric in metrics:
                    deltas, per_run = paired_deltas(results, cond, baseline, metric, direction)
                    if deltas.size == 0:
                        continue
                    seed = label_seed(cond, baseline, metric, direction)
                    low, high = percentile_bootstrap_ci(
                        deltas,
                        resamples=stats.bootstrap_resamples,
                        confidence=stats.confidence,
                        seed=seed,
                    )
                    gained = sum(g for g, _ in per_run)
                    lost = sum(lo for _, lo in per_run)
                    rows.append(
                        ComparisonRow(
                            condition=cond,
                            baseline=baseline,
                            metric=metric,
                            direction=direction,
                            runs=len(per_run),
                            n_pairs=int(deltas.size),
                            delta=float(deltas.mean()),
                            ci_low=low,
                            ci_high=high,
                            gained=gained / len(per_run),
                            lost=lost / len(per_run),
                            mcnemar_p=mcnemar_exact(gained, lost),
                            tost_p=tost_paired(deltas, stats.tost_low, stats.tost_high),
                        )
                    )
    return rows
