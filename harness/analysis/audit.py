"""Metric-disagreement audit (paper Appendix D).

Rows where legacy substring containment fires but normalised exact match does not, up to
``per_file`` per result file of the audited conditions (file order), labelled by rule:
``verbose_correct`` (the first answer span matches the gold), ``substring_noise`` (no
word-boundary match: the substring rule fired inside another word), else
``accidental_mention`` (the gold is mentioned, but not as the answer).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from harness.analysis.metrics import (
    first_answer_span,
    first_span_match,
    legacy_contains,
    normalized_exact_match,
    word_boundary_contains,
)
from harness.analysis.results import ResultSet

__all__ = ["LABELS", "AuditRow", "audit", "label_counts", "label_row"]

LABELS = ("verbose_correct", "substring_noise", "accidental_mention")


@dataclass(frozen=True)
class AuditRow:
    file: str
    condition: str
    direction: str
    seed: int | None
    sample_id: str
    gold: str
    prediction: str
    first_span: str
    label: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def label_row(prediction: str, gold: str) -> str:
    """The rule-derived label of a legacy-true, normalised-EM-false row."""
    if first_span_match(prediction, gold):
        return "verbose_correct"
    if not word_boundary_contains(prediction, gold):
        return "substring_noise"
    return "accidental_mention"


def audit(
    results: ResultSet, conditions: tuple[str, ...], *, per_file: int = 5, direction: str = "fwd"
) -> list[AuditRow]:
    """The audit slice over ``results`` (files in load order)."""
    rows = []
    for f in results.files:
        if f.condition not in conditions or f.direction != direction:
            continue
        kept = 0
        for r in f.per_sample:
            if kept >= per_file:
                break
            pred, gold = r["prediction"], r["gold"]
            if legacy_contains(pred, gold) and not normalized_exact_match(pred, gold):
                rows.append(
                    AuditRow(
                        f.name,
                        f.condition,
                        f.direction,
                        f.seed,
                        r["sample_id"],
                        gold,
                        pred,
                        first_answer_span(pred),
                        label_row(pred, gold),
                    )
                )
                kept += 1
    return rows


def label_counts(rows: list[AuditRow]) -> dict[str, int]:
    c = Counter(r.label for r in rows)
    return {label: c.get(label, 0) for label in LABELS}
