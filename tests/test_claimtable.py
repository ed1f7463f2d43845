"""The claim table: every claim test, in paper order, with per-source outcomes and the
numbers the run measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.cli.claimtable import collect_claims, render_claim_table, sentence
from harness.errors import HarnessError
from tests.helpers import ROOT, catalog_of, claims_in_checkout, needs_artifact


def test_claims_are_collected_in_paper_order_with_the_extension_last() -> None:
    claims = claims_in_checkout()
    modules = [c.module for c in claims]
    assert modules[0] == "test_01_protocol"
    assert modules == sorted(modules)
    assert modules[-1].startswith("test_9") and "beyond_the_paper" in modules[-1]
    assert all(c.quote for c in claims), [c.name for c in claims if not c.quote]
    assert not any(c.module == "test_99_snapshots" for c in claims)
    assert claims[-1].beyond_the_paper and not claims[0].beyond_the_paper
    first_beyond = next(i for i, c in enumerate(claims) if c.beyond_the_paper)
    assert all(c.beyond_the_paper for c in claims[first_beyond:])


def test_collect_only_lists_the_claims_in_the_same_order() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "claims", "--collect-only", "-q", "--source", "paper"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = [ln.split("::")[1].split("[")[0] for ln in out.splitlines() if "::" in ln]
    claim_names = [c.name for c in claims_in_checkout()]
    assert [n for n in names if n in claim_names] == claim_names


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("test_translator_normalized_cosine_is_near_0_97_across_seeds", "near 0.97 across"),
        ("test_additive_injection_adds_0_01_of_the_translated_vector", "adds 0.01 of"),
        ("test_x_around_0_85_against_native_68_70", "around 0.85 against native 68.70"),
        ("test_ran_for_the_seeds_42_123_and_456", "seeds 42 123 and 456"),
        ("test_additive_injection_ci_versus_no_injection", "additive injection CI versus"),
    ],
)
def test_claim_names_read_as_sentences(name: str, text: str) -> None:
    assert text in sentence(name)


def test_every_claim_name_reads_without_abbreviations() -> None:
    for c in claims_in_checkout():
        words = c.sentence.split()
        assert not {"nl", "r2", "b"} & set(words), c.name
        assert "0 " not in c.sentence.replace("10 ", ""), c.name


def _entry(outcome: str, measured: str = "", detail: str = "", run: str = "R2") -> dict:
    return {"outcome": outcome, "measured": measured, "detail": detail, "run": run}


def test_the_table_shows_measured_numbers_findings_failures_and_snapshots(tmp_path) -> None:
    claims = claims_in_checkout()
    status = tmp_path / "status.json"
    snap = {"module": "test_99_snapshots", "section": "", "quote": "", "line": 0}
    status.write_text(
        json.dumps(
            {
                "latest_run": "R2",
                "catalog": {**catalog_of(claims), "test_summary_table_is_unchanged": snap},
                "claims": {
                    claims[0].name: {
                        "paper": _entry("passed", "+0.42 pp [-0.42, +1.26]"),
                        "mini": _entry("xfail", "-1.77 pp", "a weak relay"),
                    },
                    claims[1].name: {"paper": _entry("failed", "x", "measured 0.5, not 0.97")},
                    claims[2].name: {"paper": _entry("passed", "old number", run="R1")},
                    "test_summary_table_is_unchanged": {
                        "paper": _entry("passed"),
                        "mini": _entry("failed", "", "row 3 differs"),
                    },
                },
            }
        )
    )
    text = render_claim_table(status)
    assert "PASS    +0.42 pp [-0.42, +1.26]" in text
    assert "xfail   -1.77 pp -- a weak relay" in text
    assert "FAIL    measured 0.5, not 0.97" in text
    assert "[earlier run R1] old number" in text
    assert "summary_table_is_unchanged: row 3 differs" in text
    md = render_claim_table(status, markdown=True)
    assert "| 1 |" in md and "PASS +0.42 pp [-0.42, +1.26]" in md and "snapshots" in md


def test_a_broken_status_file_is_a_one_line_error(tmp_path) -> None:
    bad = tmp_path / "status.json"
    bad.write_text('{"claims": ')
    with pytest.raises(HarnessError, match="unreadable"):
        render_claim_table(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(HarnessError, match="not a status object"):
        render_claim_table(bad)


def test_every_finding_names_a_claim_and_carries_its_reason_numbers_and_tolerance() -> None:
    import tomllib

    from harness.analysis.tolerance import finding_tolerance

    findings = tomllib.loads((ROOT / "claims" / "findings.toml").read_text(encoding="utf-8"))
    names = {c.name for c in claims_in_checkout()}
    assert findings and set(findings) <= names, set(findings) - names
    for claim, per_source in findings.items():
        for source, entry in per_source.items():
            assert set(entry) <= {"why", "recorded", "tolerance"}, (claim, source)
            assert entry["why"] and entry["recorded"], (claim, source)
            assert all(isinstance(v, float | int) for v in entry["recorded"].values())
            finding_tolerance(entry.get("tolerance", "exact"))


@needs_artifact
def test_the_table_lists_the_claims_a_run_reported_in_the_checkouts_order(tmp_path) -> None:
    """The claim table reads its claims from the status file a ``pytest claims`` run writes
    (no test source is parsed): after a run on ``paper``, it lists exactly the checkout's
    claims, in paper order, with their docstrings, and a status file without a catalog
    lists none."""
    status = tmp_path / "status.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "claims", "--source", "paper", "-q", "-p",
         "no:cacheprovider", "-p", "no:randomly", "--claims-status", str(status)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert collect_claims(status) == claims_in_checkout()
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"claims": {}, "latest_run": "R"}))
    assert collect_claims(bare) == [] and collect_claims(None) == []
