"""A source as the claims see it: a set of result-file folders and the protocol they follow,
with its analyses computed once (summary, paired comparisons, validation, audit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.analysis.audit import AuditRow, audit
from harness.analysis.results import ResultSet
from harness.analysis.tables import ComparisonRow, SummaryRow, compare, summarize
from harness.analysis.validate import ValidationReport, validate
from harness.protocol import Protocol
from harness.spec.jobs import expected

__all__ = ["Source", "SourceUnavailable"]


class SourceUnavailable(Exception):
    """The source cannot be used here; ``str(exc)`` says why and how to provide it."""


@dataclass
class Source:
    """A named folder set of result files and the protocol they follow, with cached analyses."""

    name: str
    protocol: Protocol
    result_dirs: list[Path]
    eval_path: Path | None
    include_strict: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def results(self) -> ResultSet:
        return ResultSet.from_dirs(*self.result_dirs)

    @cached_property
    def summary(self) -> dict[str, SummaryRow]:
        """condition -> summary row, primary direction only."""
        return {r.condition: r for r in summarize(self.results) if r.direction == "fwd"}

    @cached_property
    def comparisons(self) -> dict[tuple[str, str], ComparisonRow]:
        """(condition, baseline) -> paired comparison on the primary metric, fwd."""
        rows = compare(self.results, stats=self.protocol.stats, directions=("fwd",))
        return {(r.condition, r.baseline): r for r in rows}

    @cached_property
    def validation(self) -> ValidationReport:
        return validate(
            self.result_dirs,
            self.protocol,
            include_strict=self.include_strict,
            eval_path=self.eval_path,
        )

    @cached_property
    def validation_main(self) -> ValidationReport:
        """The main grid only (the protocol's conditions and directions): appendix, strict and
        extension files are not read."""
        return validate(
            self.result_dirs,
            self.protocol,
            include_strict=False,
            eval_path=self.eval_path,
            only=set(expected(self.protocol)),
        )

    @cached_property
    def audit_rows(self) -> list[AuditRow]:
        return audit(
            self.results, self.protocol.audit.conditions, per_file=self.protocol.audit.per_file
        )

    def wb(self, condition: str) -> float:
        """Mean word-boundary accuracy of a condition over its runs (fwd)."""
        return self.summary[condition].means["word_boundary_contains"]

    def translator_metrics(self, kind: str = "linear") -> list[dict[str, Any]]:
        """Per-seed translator quality records carried by result files (ours only).

        ``kind``: ``linear`` (the paper's fitted translator, shared by its conditions) or a
        causal condition's name (``causal_replace``, ``causal_additive``).
        """
        seen: dict[Any, dict[str, Any]] = {}
        for f in self.results:
            t = f.raw.get("translator")
            if not isinstance(t, dict) or f.direction != "fwd":
                continue
            causal = str(t.get("method", "")).startswith("causal")
            if (kind == "linear" and not causal) or (causal and f.condition == kind):
                seen.setdefault(f.seed, t)
        return [seen[k] for k in sorted(seen, key=str)]
