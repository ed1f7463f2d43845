"""Frozen tables per source: a protocol or metric change shows up as a snapshot diff.

Accept a deliberate change with ``pytest claims --snapshot-update -p no:xdist`` and commit the
``__snapshots__`` diff. Floats are rounded; paths, timings and devices are excluded.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from syrupy.extensions.json import JSONSnapshotExtension

from harness.audit import label_counts
from harness.sources import Source
from harness.tables import summarize


@pytest.fixture
def snap(snapshot):
    return snapshot.use_extension(JSONSnapshotExtension)


def _round(obj: Any, digits: int = 4) -> Any:
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round(v, digits) for v in obj]
    return obj


def test_summary_table_is_unchanged(source: Source, snap) -> None:
    """Table 1 (all directions), rounded to 4 decimals."""
    assert _round([r.to_json() for r in summarize(source.results)]) == snap


def test_paired_comparisons_are_unchanged(source: Source, snap) -> None:
    """Table 3: paired deltas, CIs, gained/lost and test p-values, rounded to 4 decimals."""
    rows = [r.to_json() for r in source.comparisons.values()]
    assert _round(rows) == snap


def test_validation_report_is_unchanged(source: Source, snap) -> None:
    """Appendix B: which checks pass, with counts (details carry file names, not paths)."""
    rep = source.validation.to_json()
    rep["checks"] = [{k: c[k] for k in ("name", "blocking", "passed")} for c in rep["checks"]]
    assert rep == snap


def test_audit_counts_are_unchanged(source: Source, snap) -> None:
    """Appendix D: label counts overall and per condition, and the audited sample ids."""
    rows = source.audit_rows
    per_cond = Counter((r.condition, r.label) for r in rows)
    out = {
        "label_counts": label_counts(rows),
        "per_condition": {f"{c}/{lab}": n for (c, lab), n in sorted(per_cond.items())},
        "rows": [f"{r.file}:{r.sample_id}:{r.label}" for r in rows],
    }
    assert out == snap
