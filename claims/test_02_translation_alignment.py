"""Section 3.2 -- Offline translation quality is high (yet, Section 4, not causally usable)."""

from __future__ import annotations

import math
import statistics

import pytest

from claims._stated import stated_kind
from claims._util import ci, cmp
from harness.sources import Source


def _metric(source: Source, key: str) -> list[float]:
    recs = source.translator_metrics()
    if not recs:
        pytest.skip(
            f"{source.name} result files carry no translator metrics (the paper artifact "
            "publishes none; only our runner records them)"
        )
    return [float(r[key]) for r in recs]


def test_translator_normalized_cosine_is_near_0_97_across_seeds(source: Source, measured) -> None:
    """ "The corrected M6 translation runs show strong normalized-space alignment, with [...]
    mean normalized cosine similarity 0.973526 across seeds." (near: within 0.03)"""
    vals = _metric(source, "normalized_cosine")
    mean = statistics.fmean(vals)
    msg = measured(f"mean {mean:.4f}; per seed {[round(v, 4) for v in vals]}", mean_cosine=mean)
    assert abs(mean - 0.97) <= 0.03, msg


def test_translator_normalized_r_squared_is_near_0_88_across_seeds(
    source: Source, measured
) -> None:
    """ "mean normalized R^2 = 0.882773" (Section 3.2; near: within 0.05)"""
    vals = _metric(source, "normalized_r2")
    mean = statistics.fmean(vals)
    msg = measured(f"mean {mean:.4f}; per seed {[round(v, 4) for v in vals]}", mean_r2=mean)
    assert abs(mean - 0.88) <= 0.05, msg


def test_high_offline_alignment_coexists_with_destructive_replacement(
    source: Source, measured
) -> None:
    """ "The contrast between high offline alignment and zero downstream improvement is a clean
    separation of representational alignment from receiver-side causal usability."
    (Section 1; high: normalised cosine at least 0.9 on every seed)"""
    vals = _metric(source, "normalized_cosine")
    row = cmp(source, "replace", "no_inject")
    msg = measured(f"min cosine {min(vals):.4f}; {ci(row)}", min_cosine=min(vals))
    assert min(vals) >= 0.9 and row.ci_high < 0, msg


def test_translator_mean_normalized_r_squared_is_0_882773_and_cosine_0_973526(
    source: Source, measured
) -> None:
    """ "The corrected M6 translation runs show strong normalized-space alignment, with mean
    normalized R^2 = 0.882773 and mean normalized cosine similarity 0.973526 across seeds."
    (Section 3.2) -- stated numbers (claims/_stated.py): the artifact and its published tables
    carry no translator metrics, so the paper source has nothing to compare (skipped); on a
    rerun of the paper's protocol each mean over seeds lies within sampling error: the
    stated value inside the rerun's t interval over its seeds (t at 2 degrees of freedom,
    Bonferroni over the two numbers), widened by the rounding of the stated 6 decimals and
    by the measured cross-machine spread of the linear translator's metrics (3.1e-9,
    docs/portability.md, well under that rounding)."""
    kind = stated_kind(source)
    if kind == "published":
        pytest.skip(
            "the paper's artifact and published tables carry no translator metrics: the "
            "stated 0.882773 / 0.973526 can only be compared with a rerun's"
        )
    stated = {"normalized_r2": 0.882773, "normalized_cosine": 0.973526}
    bad, parts, values = [], [], {}
    for key, want in stated.items():
        vals = _metric(source, key)
        mean = statistics.fmean(vals)
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        t = _T_975_BONFERRONI_2[len(vals) - 1] if 1 < len(vals) <= 3 else float("inf")
        half = t * sd / math.sqrt(len(vals)) + 5e-7
        parts.append(f"{key} {mean:.6f} +/- {half:.6f} (stated {want})")
        values[key] = mean
        if abs(mean - want) > half:
            bad.append(key)
    msg = measured("; ".join(parts), **values)
    assert not bad, f"{msg}: outside sampling error: {bad}"


# Student t quantile 1 - 0.05 / (2 x 2) (two numbers, two-sided 95% family-wise) for 1 and 2
# degrees of freedom (2 and 3 seeds); a single seed has no spread to test against.
_T_975_BONFERRONI_2 = {1: 25.452, 2: 6.205}
