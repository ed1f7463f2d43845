"""Test helpers: where the paper artifact is, and skipping cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.analysis.artifact import find_artifact

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
