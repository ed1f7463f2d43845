"""Frozen tables per source: a protocol or metric change shows up as a snapshot diff.

Accept a deliberate change with ``pytest claims --snapshot-update -p no:xdist`` and commit the
``__snapshots__`` diff. Floats are rounded to 4 decimals; paths, timings and devices are
excluded. Rows of conditions that are exact across machines must match exactly; rows of
conditions whose map is trained through the receiver are compared within the tolerance that
``harness.analysis.tolerance`` declares from a measured cross-machine spread (printed on failure).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from harness.analysis.audit import label_counts
from harness.analysis.tables import summarize
from harness.analysis.tolerance import (
    TRAINED_MAP_ABS,
    TRAINED_MAP_COUNT_ABS,
    compare_within_tolerance,
)
from harness.conditions import CONDITIONS
from harness.sources import Source

SNAPSHOTS = Path(__file__).parent / "__snapshots__" / Path(__file__).stem
TRAINED = frozenset(n for n, c in CONDITIONS.items() if not c.exact_across_machines)
TOLERANCE_NOTE = (
    f"rows of {sorted(TRAINED)} compared within {TRAINED_MAP_ABS} (proportions) and "
    f"{TRAINED_MAP_COUNT_ABS} (gained/lost per run), p-values not frozen; all else exact "
    "(harness/analysis/tolerance.py)"
)


class TolerantJSONSnapshot(JSONSnapshotExtension):
    """JSON snapshots whose rows of training-dependent conditions match within tolerance."""

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        if serialized_data == snapshot_data:
            return True
        try:
            got, want = json.loads(serialized_data), json.loads(snapshot_data)
        except (TypeError, ValueError):
            return False
        if not (isinstance(got, list) and isinstance(want, list)):
            return False
        if not all(isinstance(r, dict) for r in [*got, *want]):
            return False
        return not compare_within_tolerance(got, want, TRAINED)


@pytest.fixture
def snap(snapshot, request: pytest.FixtureRequest):
    """The snapshot of this test and source. A source with no recorded snapshot at all (a new
    protocol file) is skipped until they are recorded with ``--snapshot-update``; one missing
    snapshot of a source that has others is a failure."""
    if (
        not request.config.option.update_snapshots
        and not (SNAPSHOTS / f"{request.node.name}.json").is_file()
    ):
        pytest.skip(
            f"no snapshot recorded for {request.node.name}: record one with "
            "'pytest claims --source ... --snapshot-update -p no:xdist' and commit it"
        )
    return snapshot.use_extension(TolerantJSONSnapshot)


def _round(obj: Any, digits: int = 4) -> Any:
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v, digits) for v in obj]
    return obj


def _differences(rows: list[dict[str, Any]], request: pytest.FixtureRequest) -> str:
    """The tolerance-aware differences against the stored snapshot, for the failure message."""
    stored = SNAPSHOTS / f"{request.node.name}.json"
    try:
        want = json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or unreadable: syrupy's own message says so
        return TOLERANCE_NOTE
    diffs = compare_within_tolerance(json.loads(json.dumps(rows)), want, TRAINED)
    return f"{TOLERANCE_NOTE}; differences: {diffs[:6]}"


def test_summary_table_is_unchanged(source: Source, snap, measured, request) -> None:
    """Table 1 (all directions), rounded to 4 decimals."""
    rows = _round([r.to_json() for r in summarize(source.results)])
    measured(f"{len(rows)} rows")
    assert rows == snap, _differences(rows, request)


def test_paired_comparisons_are_unchanged(source: Source, snap, measured, request) -> None:
    """Table 3: paired deltas, CIs, gained/lost and test p-values, rounded to 4 decimals."""
    rows = _round([r.to_json() for r in source.comparisons.values()])
    measured(f"{len(rows)} rows")
    assert rows == snap, _differences(rows, request)


def test_validation_report_is_unchanged(source: Source, snap, measured) -> None:
    """Appendix B: which checks pass, with counts (details carry file names, not paths)."""
    rep = source.validation.to_json()
    rep["checks"] = [{k: c[k] for k in ("name", "blocking", "passed")} for c in rep["checks"]]
    measured(f"{len(rep['checks'])} checks")
    assert rep == snap


def test_audit_counts_are_unchanged(source: Source, snap, measured) -> None:
    """Appendix D: label counts overall and per condition, and the audited sample ids."""
    rows = source.audit_rows
    per_cond = Counter((r.condition, r.label) for r in rows)
    out = {
        "label_counts": label_counts(rows),
        "per_condition": {f"{c}/{lab}": n for (c, lab), n in sorted(per_cond.items())},
        "rows": [f"{r.file}:{r.sample_id}:{r.label}" for r in rows],
    }
    measured(f"{len(rows)} audit rows")
    assert out == snap
