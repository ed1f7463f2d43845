"""The claim table for people: each claim, the paper sentence it checks, and per source the
outcome of the last ``pytest claims`` run (read from the status file pytest writes)."""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Claim", "collect_claims", "render_claim_table"]

CLAIMS_DIR = Path(__file__).resolve().parent.parent / "claims"
SOURCES = ("paper", "mini", "pythia")
# Paper order: Section 3.2, 4.1, 4.2, 4.3, Appendix B, Appendix D; then beyond the paper.
MODULE_ORDER = (
    "test_translation_alignment",
    "test_main_results",
    "test_failure_analysis",
    "test_diagnostic_controls",
    "test_validation",
    "test_metric_audit",
    "test_causal_translator",
)
_SYMBOL = {
    "passed": "PASS",
    "failed": "FAIL",
    "skipped": "skip",
    "xfail": "xfail",
    "xpass": "XPASS",
}


@dataclass(frozen=True)
class Claim:
    module: str
    section: str
    name: str
    quote: str

    @property
    def sentence(self) -> str:
        """The test name read as a sentence."""
        return self.name.removeprefix("test_").replace("_", " ")


def collect_claims(claims_dir: Path = CLAIMS_DIR) -> list[Claim]:
    """Claim tests (functions taking ``source``) from the claim modules, in file order."""
    out = []
    order = {name: i for i, name in enumerate(MODULE_ORDER)}
    paths = sorted(
        claims_dir.glob("test_*.py"), key=lambda p: (order.get(p.stem, len(order)), p.stem)
    )
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        section = (ast.get_docstring(tree) or "").splitlines()[0] if ast.get_docstring(tree) else ""
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                if "source" not in [a.arg for a in node.args.args] or "snapshot" in path.name:
                    continue
                doc = " ".join((ast.get_docstring(node) or "").split())
                out.append(Claim(path.stem, section, node.name, doc))
    return out


def render_claim_table(
    status_path: str | os.PathLike[str] | None = None, *, markdown: bool = False
) -> str:
    """Render the claim table (plain text, or markdown for the README)."""
    status: dict[str, dict[str, str]] = {}
    if status_path and Path(status_path).is_file():
        status = json.loads(Path(status_path).read_text(encoding="utf-8")).get("claims", {})
    claims = collect_claims()
    lines = []
    counts = {s: {} for s in SOURCES}
    for c in claims:
        for s in SOURCES:
            outcome = status.get(c.name, {}).get(s, "not run|").split("|", 1)[0]
            counts[s][outcome] = counts[s].get(outcome, 0) + 1
    if markdown:
        lines.append("| # | claim | paper | mini | pythia |")
        lines.append("|---|---|---|---|---|")
    section = None
    for i, c in enumerate(claims, 1):
        cells = []
        for s in SOURCES:
            raw = status.get(c.name, {}).get(s, "not run|")
            outcome, _, detail = raw.partition("|")
            cells.append(_SYMBOL.get(outcome, outcome))
            if outcome in ("xfail", "failed") and detail and not markdown:
                cells[-1] += "*"
        if markdown:
            lines.append(f"| {i} | **{c.sentence}** — {c.quote} | " + " | ".join(cells) + " |")
        else:
            if c.section != section:
                section = c.section
                lines.append(f"\n{section}")
            lines.append(f"  {i:2d}. {c.sentence:<90.90} " + " ".join(f"{x:>7}" for x in cells))
    if not markdown:
        lines.insert(0, f"{'':6}{'claim':<90} {'paper':>7} {'mini':>7} {'pythia':>7}")
        lines.append("")
        for s in SOURCES:
            lines.append(f"{s:>7}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts[s].items())))
        notes = [(c.name, s, status.get(c.name, {}).get(s, "")) for c in claims for s in SOURCES]
        finds = [
            (n, s, v.partition("|")[2]) for n, s, v in notes if v.startswith(("xfail", "failed"))
        ]
        skips = {}
        for _n, s, v in notes:
            if v.startswith("skipped") and "unavailable" in v and s not in skips:
                skips[s] = v.partition("|")[2]
        for s, why in skips.items():
            lines.append(f"  {s} skipped: {why}")
        if finds:
            lines.append(
                "\nFindings (claims that do not hold on a source, with the measured numbers):"
            )
            lines.extend(f"  - {n} [{s}]: {d}" for n, s, d in finds)
        if not status:
            lines.append("\n(no status file yet: run 'pytest claims -n auto' first)")
    return "\n".join(lines)
