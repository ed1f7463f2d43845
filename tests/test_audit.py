from __future__ import annotations

import pytest

from harness.analysis.audit import audit, label_counts, label_row
from harness.analysis.results import ResultSet
from harness.protocol import load_protocol
from tests.helpers import FINAL, needs_artifact


@pytest.mark.parametrize(
    ("prediction", "gold", "label"),
    [
        ("Indonesia. The capital Jakarta is located here", "Indonesia", "verbose_correct"),
        ("Eurasia is a landmass", "Asia", "substring_noise"),
        ("Not Japan; people in Asia often travel", "Asia", "accidental_mention"),
    ],
)
def test_label_rules(prediction: str, gold: str, label: str) -> None:
    assert label_row(prediction, gold) == label


@needs_artifact
def test_audit_reproduces_65_rows_labelled_5_31_29() -> None:
    proto = load_protocol("paper")
    rows = audit(ResultSet.from_dirs(FINAL), proto.audit.conditions, per_file=proto.audit.per_file)
    assert len(rows) == 65
    assert label_counts(rows) == {
        "verbose_correct": 5,
        "substring_noise": 31,
        "accidental_mention": 29,
    }
    assert {r.condition for r in rows if r.label == "verbose_correct"} == {"nl_relay"}
    per_file = {}
    for r in rows:
        per_file[r.file] = per_file.get(r.file, 0) + 1
    assert max(per_file.values()) == 5
