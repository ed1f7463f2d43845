"""Snapshot comparison: exact where the quantity is machine-exact, within the declared
tolerance for maps trained through the receiver, and red on a deliberate change."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.analysis import tolerance
from harness.analysis.results import ResultSet
from harness.analysis.tables import compare, summarize
from harness.analysis.tolerance import TRAINED_MAP_ABS, compare_within_tolerance, finding_tolerance
from harness.conditions import CONDITIONS
from harness.protocol import load_protocol
from tests.helpers import FINAL, STRICT, needs_artifact

ROOT = Path(__file__).resolve().parents[1]

TRAINED = {n for n, c in CONDITIONS.items() if not c.exact_across_machines}


def _rows(stats=None, metrics=None) -> list[dict]:
    results = ResultSet.from_dirs(FINAL, STRICT)
    kw = {"stats": stats} if stats else {}
    rows = [r.to_json() for r in compare(results, directions=("fwd",), **kw)]
    return json.loads(json.dumps(rows))


def test_only_maps_trained_through_the_receiver_are_compared_within_a_tolerance() -> None:
    assert {"causal_replace", "causal_additive", "last_token_causal_replace"} <= TRAINED
    assert {n for n, c in CONDITIONS.items() if c.translator_kind == "causal"} <= TRAINED
    with pytest.raises(ValueError, match="unknown finding tolerance"):
        finding_tolerance("loose")


def _measured() -> list[tuple[str, str, dict]]:
    """(file, condition, max_abs_difference) of every condition measured by
    harness/tools/portability.py in docs/portability*.json (emulated machines and thread counts)."""
    out = []
    for path in sorted((ROOT / "docs").glob("portability*.json")):
        for name, entry in json.loads(path.read_text())["conditions"].items():
            out.append((path.name, name, entry["max_abs_difference"]))
    return out


def test_the_declared_spread_covers_every_measured_cross_machine_difference() -> None:
    """The trained-map tolerance rests on measurement: every proportion and count difference
    that docs/portability*.json records for a trained map is within the declared spread, and
    every machine-exact condition measured exactly 0 (else it must not be declared exact)."""
    rows = _measured()
    assert rows, "no portability measurement found in docs/"
    for file, name, diff in rows:
        if name not in CONDITIONS:
            continue
        if name in TRAINED:
            # (1e-12: the float sum behind a measured proportion, e.g. 1/396 + 2e-18)
            assert diff["proportion"] <= tolerance.TRAINED_MAP_SPREAD + 1e-12, (file, name, diff)
            assert diff["count"] <= tolerance.TRAINED_MAP_COUNT_SPREAD, (file, name, diff)
        else:
            assert diff["proportion"] == diff["count"] == 0.0, (file, name, diff)
    assert {n for _, n, _ in rows} & TRAINED, "no trained map was ever measured"


def test_one_flipped_prediction_is_larger_than_the_rounding_tolerance() -> None:
    """The exact comparison's rounding allowance cannot hide one changed prediction of the
    smallest file the suite freezes (the strict 383-row shuffle of the paper)."""
    assert tolerance.ROUNDING_ABS < 1 / 396 / 2
    assert finding_tolerance("exact") == tolerance.ROUNDING_ABS


@needs_artifact
def test_a_changed_protocol_value_turns_the_comparison_snapshot_red() -> None:
    stats = load_protocol("paper").stats
    base = _rows(stats)
    changed = _rows(dataclasses.replace(stats, bootstrap_resamples=4999))
    assert compare_within_tolerance(base, base, TRAINED) == []
    diffs = compare_within_tolerance(changed, base, TRAINED)
    assert diffs and all("ci_" in d for d in diffs), diffs[:3]


@needs_artifact
def test_a_changed_metric_turns_the_summary_snapshot_red() -> None:
    results = ResultSet.from_dirs(FINAL, STRICT)
    base = [r.to_json() for r in summarize(results)]
    other = [r.to_json() for r in summarize(results, metrics=("exact_match", "legacy_contains"))]
    assert compare_within_tolerance(other, base, TRAINED)


@needs_artifact
def test_one_altered_prediction_of_a_machine_exact_condition_is_red() -> None:
    base = _rows()
    changed = [dict(r) for r in base]
    row = next(r for r in changed if r["condition"] == "additive")
    row["delta"] += 1 / 1188
    (diff,) = compare_within_tolerance(changed, base, TRAINED)
    assert "additive vs no_inject" in diff and "delta" in diff


def _causal_row(**over) -> dict:
    row = {
        "condition": "causal_replace",
        "baseline": "no_inject",
        "delta": -0.7348,
        "ci_low": -0.7593,
        "ci_high": -0.7096,
        "gained": 0.3333,
        "lost": 291.3333,
        "n_pairs": 1188,
        "mcnemar_p": 0.0,
    }
    return {**row, **over}


def test_a_trained_map_row_matches_within_the_tolerance_and_not_beyond() -> None:
    want = [_causal_row()]
    inside = [_causal_row(delta=-0.7348 + 0.9 * TRAINED_MAP_ABS, mcnemar_p=0.5)]
    assert compare_within_tolerance(inside, want, TRAINED) == []
    beyond = [_causal_row(delta=-0.7348 + 1.5 * TRAINED_MAP_ABS)]
    (diff,) = compare_within_tolerance(beyond, want, TRAINED)
    assert f"tolerance {TRAINED_MAP_ABS}" in diff
    # counts and identity stay exact even for trained rows
    assert compare_within_tolerance([_causal_row(n_pairs=1187)], want, TRAINED)
    assert compare_within_tolerance(
        [_causal_row(gained=0.3333 + 2 * tolerance.TRAINED_MAP_COUNT_ABS)], want, TRAINED
    )


def test_the_paper_and_mini_snapshots_are_committed() -> None:
    from tests.helpers import ROOT

    folder = ROOT / "claims" / "__snapshots__" / "test_99_snapshots"
    for source in ("paper", "mini"):
        names = sorted(p.name for p in folder.glob(f"*[[]{source}].json"))
        assert len(names) == 4, (source, names)


def test_a_large_recorded_number_agrees_to_float32_precision_and_a_small_one_to_4_decimals() -> (
    None
):
    """The identity map's R2 (about -7e4) measured on two machines: 4e-8 relative apart, inside
    the relative allowance; a shift in its 5th significant digit, or of 1e-4 in a proportion,
    is outside."""
    exact = finding_tolerance("exact")
    want = -70141.438907
    assert abs(-70141.4417 - want) <= tolerance.within(exact, want)
    assert abs(-70141.6 - want) > tolerance.within(exact, want)
    assert tolerance.within(exact, 0.572129) == exact
    assert abs(0.5722 - 0.572129) > tolerance.within(exact, 0.572129)
