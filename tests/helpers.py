"""Test helpers: where the paper artifact is, and skipping cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.spec.artifact import find_artifact

ARTIFACT = find_artifact()
needs_artifact = pytest.mark.skipif(
    ARTIFACT is None,
    reason="paper artifact not found: vendor/paper-artifact is missing from this checkout "
    "(restore it with git, or set HARNESS_ARTIFACT)",
)
FINAL = ARTIFACT / "results" / "final" if ARTIFACT else None
STRICT = ARTIFACT / "results" / "final_strict_controls" if ARTIFACT else None
EVAL = ARTIFACT / "data" / "clean_eval.jsonl" if ARTIFACT else None

ROOT = Path(__file__).resolve().parent.parent


def claims_in_checkout() -> list:
    """The claim tests this checkout defines (functions taking ``source``), in module and
    definition order, snapshots excluded, as :class:`harness.cli.claimtable.Claim`:
    what a status file's catalog must list after a full ``pytest claims`` run. (Tests may
    read the test sources; the claim table itself reads only the status file.)"""
    import ast

    from harness.cli.claimtable import SNAPSHOT_MODULE, Claim

    out = []
    for path in sorted((ROOT / "claims").glob("test_*.py")):
        if path.stem == SNAPSHOT_MODULE:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree) or ""
        section = doc.splitlines()[0] if doc else ""
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test_"):
                continue
            if "source" in [a.arg for a in node.args.args]:
                quote = " ".join((ast.get_docstring(node) or "").split())
                out.append(Claim(path.stem, section, node.name, quote))
    return out


def catalog_of(claims: list) -> dict:
    """A status file's ``catalog`` for ``claims`` (what a run's claims report about
    themselves), in their order."""
    return {
        c.name: {"module": c.module, "section": c.section, "quote": c.quote, "line": i}
        for i, c in enumerate(claims)
    }
