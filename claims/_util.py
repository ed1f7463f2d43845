"""Small helpers shared by the claim modules."""

from __future__ import annotations

import statistics

import pytest

from harness.analysis.results import ResultFile, ResultSet
from harness.analysis.tables import ComparisonRow, compare
from harness.conditions import with_role
from harness.sources import Source

# The paper's transfer conditions and its "replacement-style" ones (abstract, Figure 3: the
# receiver state is substituted), as the condition registry labels them.
PAPER_GROUPS = ("primary", "strict")  # the paper's 24-file grid
TRANSFER_CONDITIONS = with_role("transfer", PAPER_GROUPS)
REPLACEMENT_STYLE = with_role("replacement_style", PAPER_GROUPS)


def need(source: Source, *conditions: str) -> None:
    """Skip when the source holds no runs of a condition the claim needs."""
    missing = [c for c in conditions if c not in source.summary]
    if missing:
        pytest.skip(f"{source.name} has no result files for {', '.join(missing)}")


def cmp(source: Source, condition: str, baseline: str) -> ComparisonRow:
    need(source, condition, baseline)
    return source.comparisons[(condition, baseline)]


def pp(x: float) -> str:
    """A proportion as signed percentage points."""
    return f"{x * 100:+.2f} pp"


def ci(row: ComparisonRow) -> str:
    """A comparison row as text for assertion messages (percentage points)."""
    return (
        f"{row.condition} vs {row.baseline}: {pp(row.delta)} "
        f"[{row.ci_low * 100:+.2f}, {row.ci_high * 100:+.2f}] ({row.n_pairs} pairs)"
    )


def ci_values(row: ComparisonRow, prefix: str = "") -> dict[str, float]:
    """A comparison row's delta and CI as named numbers (for findings' recorded values)."""
    return {
        f"{prefix}delta": row.delta,
        f"{prefix}ci_low": row.ci_low,
        f"{prefix}ci_high": row.ci_high,
    }


def per_seed(
    source: Source, condition: str, baseline: str
) -> list[tuple[ResultFile, ComparisonRow]]:
    """The paired comparison of each seed's run of ``condition`` against ``baseline`` alone
    (same bootstrap and statistics as the pooled rows)."""
    need(source, condition, baseline)
    out = []
    base = source.results.runs(baseline)
    for run in source.results.runs(condition):
        rows = compare(
            ResultSet([run, *base]),
            baselines=(baseline,),
            stats=source.protocol.stats,
            directions=("fwd",),
        )
        (row,) = [r for r in rows if r.condition == condition]
        out.append((run, row))
    return out


def mean_sample_field(source: Source, condition: str, key: str) -> float:
    """Mean of a per-sample numeric field over every row of a condition's runs (fwd)."""
    vals = [
        r[key]
        for f in source.results.runs(condition, "fwd")
        for r in f.per_sample
        if isinstance(r.get(key), (int, float))
    ]
    return statistics.fmean(vals) if vals else float("nan")
