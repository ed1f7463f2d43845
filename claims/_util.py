"""Small helpers shared by the claim modules."""

from __future__ import annotations

import pytest

from harness.sources import Source
from harness.tables import ComparisonRow

TRANSFER_CONDITIONS = (
    "additive",
    "replace",
    "scale_corrected",
    "best_alpha",
    "shuffled_translation",
    "shuffled_translation_strict_matched",
)


def need(source: Source, *conditions: str) -> None:
    """Skip when the source holds no runs of a condition the claim needs."""
    missing = [c for c in conditions if c not in source.summary]
    if missing:
        pytest.skip(f"{source.name} has no result files for {', '.join(missing)}")


def cmp(source: Source, condition: str, baseline: str) -> ComparisonRow:
    need(source, condition, baseline)
    return source.comparisons[(condition, baseline)]


def ci(row: ComparisonRow) -> str:
    """A comparison row as text for assertion messages (percentage points)."""
    return (
        f"{row.condition} vs {row.baseline}: delta {row.delta * 100:+.2f} pp, "
        f"95% CI [{row.ci_low * 100:+.2f}, {row.ci_high * 100:+.2f}] over {row.n_pairs} pairs"
    )
