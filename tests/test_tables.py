"""The paper's Table 1 and headline paired deltas, recomputed from the artifact's predictions."""

from __future__ import annotations

import pytest

from harness.analysis.results import ResultSet
from harness.analysis.tables import compare, summarize
from tests.helpers import FINAL, STRICT, needs_artifact

# Table 1 (the published final_summary.md): word-boundary mean, std, legacy mean, std.
TABLE1 = {
    "additive": (0.0926, 0.0073, 0.1094, 0.0081),
    "b_to_b_self_inject": (0.0884, None, 0.1035, None),
    "best_alpha": (0.0488, 0.0119, 0.0715, 0.0127),
    "nl_relay": (0.0833, None, 0.0909, None),
    "no_inject": (0.0884, None, 0.1035, None),
    "replace": (0.0025, 0.0025, 0.0101, 0.0044),
    "same_norm_random": (0.0000, 0.0000, 0.0008, 0.0015),
    "scale_corrected": (0.0076, 0.0025, 0.0143, 0.0053),
    "shuffled_translation": (0.0059, 0.0039, 0.0093, 0.0053),
    "shuffled_translation_strict_matched": (0.0052, 0.0045, 0.0087, 0.0060),
}


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


@needs_artifact
def test_summary_reproduces_table_1_to_four_decimals() -> None:
    rows = {
        r.condition: r
        for r in summarize(ResultSet.from_dirs(FINAL, STRICT))
        if r.direction == "fwd"
    }
    for cond, (wb, wb_sd, leg, leg_sd) in TABLE1.items():
        r = rows[cond]
        got = (
            _r(r.means["word_boundary_contains"]),
            _r(r.stds["word_boundary_contains"]),
            _r(r.means["legacy_contains"]),
            _r(r.stds["legacy_contains"]),
        )
        assert got == (wb, wb_sd, leg, leg_sd), cond
        assert r.means["normalized_exact_match"] == 0.0 and r.means["exact_match"] == 0.0
        assert r.n == (383 if cond.endswith("strict_matched") else 396)
        assert r.runs == (1 if wb_sd is None else 3)


@needs_artifact
@pytest.mark.parametrize(
    ("condition", "baseline", "delta", "ci"),
    [
        ("additive", "no_inject", 0.0042, (-0.0042, 0.0126)),
        ("additive", "nl_relay", 0.0093, (-0.0126, 0.0311)),
        ("replace", "no_inject", -0.0859, None),
        ("replace", "nl_relay", -0.0808, None),
    ],
)
def test_compare_reproduces_the_headline_paired_deltas(
    condition: str, baseline: str, delta: float, ci
) -> None:
    rows = {
        (r.condition, r.baseline): r
        for r in compare(ResultSet.from_dirs(FINAL), directions=("fwd",))
    }
    row = rows[(condition, baseline)]
    assert round(row.delta, 4) == delta and row.n_pairs == 1188 and row.runs == 3
    if ci is not None:
        assert row.ci_low == pytest.approx(ci[0], abs=0.003)
        assert row.ci_high == pytest.approx(ci[1], abs=0.003)


@needs_artifact
def test_strict_matched_comparison_pools_1149_pairs_and_counts_gained_and_lost() -> None:
    rows = {
        (r.condition, r.baseline): r
        for r in compare(ResultSet.from_dirs(FINAL, STRICT), directions=("fwd",))
    }
    strict = rows[("shuffled_translation_strict_matched", "no_inject")]
    assert strict.n_pairs == 1149
    # mean delta = (gained - lost) per run / n
    assert strict.delta == pytest.approx((strict.gained - strict.lost) / 383)
    selfinj = rows[("b_to_b_self_inject", "no_inject")]
    assert (selfinj.delta, selfinj.ci_low, selfinj.ci_high, selfinj.gained, selfinj.lost) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert selfinj.mcnemar_p == 1.0


@needs_artifact
def test_comparisons_are_reproducible_run_to_run() -> None:
    a = compare(ResultSet.from_dirs(FINAL), directions=("fwd",))
    b = compare(ResultSet.from_dirs(FINAL), directions=("fwd",))
    assert [r.to_json() for r in a] == [r.to_json() for r in b]
