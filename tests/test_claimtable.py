"""The claim table: every claim test, in paper order, with per-source outcomes."""

from __future__ import annotations

import json

from harness.claimtable import collect_claims, render_claim_table


def test_claims_are_collected_in_paper_order_with_the_extension_last() -> None:
    claims = collect_claims()
    modules = [c.module for c in claims]
    assert modules[0] == "test_translation_alignment"
    assert modules[-1] == "test_causal_translator"
    assert modules.count("test_causal_translator") == 6
    assert all(c.quote for c in claims), [c.name for c in claims if not c.quote]
    assert not any(c.module == "test_snapshots" for c in claims)
    assert claims[-1].section.startswith("Beyond the paper")


def test_the_table_shows_each_outcome_and_lists_findings(tmp_path) -> None:
    name = collect_claims()[-1].name
    status = tmp_path / "status.json"
    status.write_text(
        json.dumps({"claims": {name: {"paper": "skipped|no runs", "mini": "xfail|-1.77 pp"}}})
    )
    text = render_claim_table(status)
    row = next(
        line
        for line in text.splitlines()
        if name.removeprefix("test_")[:40] in line.replace(" ", "_")
    )
    assert "skip" in row and "xfail*" in row and "not run" in row
    assert f"{name} [mini]: -1.77 pp" in text
    assert "| 1 |" in render_claim_table(status, markdown=True)
