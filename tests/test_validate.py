from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from harness.analysis.validate import validate
from harness.cli import main
from harness.protocol import load_protocol
from harness.spec.jobs import expected
from tests.helpers import EVAL, FINAL, STRICT, needs_artifact

PAPER = load_protocol("paper")


def _failed(report) -> set[str]:
    return {c.name for c in report.failures()}


def test_expected_grid_is_21_primary_and_24_with_strict_files() -> None:
    assert len(expected(PAPER)) == 21
    grid = expected(PAPER, ("primary", "strict"))
    assert len(grid) == 24
    assert "h1_shuffled_translation_strict_matched_fwd_seed42_alpha1p0.json" in grid
    assert "h1_best_alpha_fwd_seed456_alpha0p3.json" in grid


@needs_artifact
def test_artifact_passes_21_of_21_and_24_of_24() -> None:
    main_rep = validate([FINAL], PAPER, eval_path=EVAL)
    assert (main_rep.present_files, main_rep.expected_files, main_rep.blocking_passed) == (
        21,
        21,
        True,
    )
    both = validate([FINAL, STRICT], PAPER, include_strict=True, eval_path=EVAL)
    assert (both.present_files, both.expected_files, both.blocking_passed) == (24, 24, True)
    notes = {c.name: c for c in both.checks if not c.blocking}
    assert "[13]" in notes["full_n_shuffle_self_fallback"].detail  # the disclosed caveat


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    if FINAL is None:
        pytest.skip("paper artifact not found")
    dst = tmp_path / "final"
    shutil.copytree(FINAL, dst)
    return dst


def _edit(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_a_removed_file_fails_validation(copy: Path) -> None:
    (copy / "h1_replace_fwd_seed123.json").unlink()
    rep = validate([copy], PAPER, eval_path=EVAL)
    assert not rep.blocking_passed and rep.present_files == 20
    assert "expected_files_present" in _failed(rep)


def test_an_altered_hash_fails_validation(copy: Path) -> None:
    _edit(
        copy / "h1_additive_fwd_seed42.json", lambda d: d["config"].update(clean_eval_hash="0" * 64)
    )
    rep = validate([copy], PAPER, eval_path=EVAL)
    assert _failed(rep) == {"clean_eval_hash"}


def test_a_dropped_sample_fails_validation(copy: Path) -> None:
    _edit(copy / "h1_scale_corrected_fwd_seed42_alpha1p0.json", lambda d: d["per_sample"].pop(17))
    assert "sample_counts" in _failed(validate([copy], PAPER, eval_path=EVAL))


def test_changed_decoding_parameters_fail_validation(copy: Path) -> None:
    _edit(
        copy / "h1_nl_relay_fwd_deterministic.json",
        lambda d: d["config"]["sender_generation"].update(max_new_tokens=64),
    )
    assert _failed(validate([copy], PAPER, eval_path=EVAL)) == {"decoding_parameters"}


def test_token_mismatch_fails_validation(copy: Path) -> None:
    def fn(d: dict) -> None:
        d["per_sample"][0]["token_ids_match"] = False
        d["diagnostics"]["token_mismatch_count"] = 1

    _edit(copy / "h1_replace_fwd_seed42.json", fn)
    assert _failed(validate([copy], PAPER, eval_path=EVAL)) == {"sequence_and_token_mismatch"}


def test_a_gold_answer_not_in_the_eval_set_fails_validation(copy: Path) -> None:
    _edit(copy / "h1_replace_fwd_seed42.json", lambda d: d["per_sample"][5].update(gold="Atlantis"))
    assert _failed(validate([copy], PAPER, eval_path=EVAL)) == {"samples_match_eval_set"}


def test_a_strict_file_with_a_self_pairing_fails_validation(tmp_path: Path) -> None:
    if STRICT is None:
        pytest.skip("paper artifact not found")
    strict = tmp_path / "strict"
    shutil.copytree(STRICT, strict)

    def fn(d: dict) -> None:
        d["per_sample"][0]["shuffle_donor_idx"] = d["per_sample"][0]["idx"]

    _edit(strict / "h1_shuffled_translation_strict_matched_fwd_seed42_alpha1p0.json", fn)
    rep = validate([FINAL, strict], PAPER, include_strict=True, eval_path=EVAL)
    assert _failed(rep) == {"strict_shuffle_invariants"}


def test_validate_cli_exits_1_on_a_blocking_failure(
    copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (copy / "h1_no_inject_fwd_deterministic.json").unlink()
    assert main(["validate", str(copy)]) == 1
    out = capsys.readouterr().out
    assert (
        "[FAIL] expected_files_present" in out
        and "missing h1_no_inject_fwd_deterministic.json" in out
    )


def test_validation_is_a_list_of_small_named_checks_each_reported_by_name() -> None:
    import inspect

    from harness.analysis.validate import CHECKS

    assert len(CHECKS) >= 12
    for check in CHECKS:
        assert check.__name__.startswith("check_") and inspect.getdoc(check), check
        assert len(inspect.getsource(check).splitlines()) <= 60, check.__name__


@needs_artifact
def test_every_check_of_a_full_report_has_a_unique_name() -> None:
    from harness.analysis.validate import validate
    from harness.protocol import load_protocol

    rep = validate([FINAL, STRICT], load_protocol("paper"), include_strict=True)
    names = [c.name for c in rep.checks]
    assert len(names) == len(set(names)) and "sample_counts" in names


# -- copies, provenance and rows (issue #30) ---------------------------------------------------


def _copy_seed42_as_seed123(copy: Path, *, edit_seed: bool) -> None:
    data = json.loads((copy / "h1_replace_fwd_seed42.json").read_text())
    if edit_seed:
        data["seed"] = 123
    (copy / "h1_replace_fwd_seed123.json").write_text(json.dumps(data))


@pytest.mark.parametrize("edit_seed", [True, False], ids=["seed-edited", "plain-copy"])
def test_a_run_copied_under_another_seeds_name_fails_validation_and_compare_naming_both(
    copy: Path, capsys: pytest.CaptureFixture[str], edit_seed: bool
) -> None:
    """One seed's file copied over another seed's (with its seed field edited or not): the
    pooled CI would count one run twice, so validate fails a blocking check and compare
    refuses, each naming the copy and the original."""
    _copy_seed42_as_seed123(copy, edit_seed=edit_seed)
    rep = validate([copy], PAPER, eval_path=EVAL)
    dup = next(c for c in rep.checks if c.name == "no_duplicate_runs")
    assert dup.blocking and not dup.passed
    assert (
        "h1_replace_fwd_seed123.json and h1_replace_fwd_seed42.json are identical apart from "
        "the seed" in dup.detail
    )
    assert main(["compare", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(r"h1_replace_fwd_seed(123|42)\.json .*h1_replace_fwd_seed(42|123)\.json", err)


def _rotate_ids(d: dict) -> None:
    ids = [r["sample_id"] for r in d["per_sample"]]
    for r, sid in zip(d["per_sample"], ids[1:] + ids[:1], strict=True):
        r["sample_id"] = sid


def _id_outside_the_eval(d: dict) -> None:
    d["per_sample"][3]["sample_id"] = "mh_clean_999999"


def _empty_gold(d: dict) -> None:
    d["per_sample"][3]["gold"] = ""


ROW_EDITS = {
    "rotated ids": (_rotate_ids, r"\d+ sample ids carry another gold than in h1_"),
    "id outside the eval": (_id_outside_the_eval, r"1 sample ids are not in the eval set"),
    "empty gold": (_empty_gold, r"1 rows with an empty gold \(first mh_clean_"),
}
PAIRING_COMMANDS = {
    "summarize": [],
    "compare": [],
    "audit": [],
    "figures": ["--out", "{tmp}/figs"],
}


@pytest.mark.parametrize("command", list(PAIRING_COMMANDS))
@pytest.mark.parametrize("edit", list(ROW_EDITS))
def test_rows_that_cannot_be_paired_are_refused_by_every_command_that_reads_rows(
    copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str, command: str
) -> None:
    """Rotated ids, an id outside the eval set and an empty gold in one file: each command
    stops with one line naming the file (checked against the eval set the files name by
    their hash, found without --eval), and validate fails."""
    fn, pattern = ROW_EDITS[edit]
    _edit(copy / "h1_replace_fwd_seed42.json", fn)
    extra = [a.format(tmp=tmp_path) for a in PAIRING_COMMANDS[command]]
    assert main([command, str(copy), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(r"^error: rows cannot be paired: h1_replace_fwd_seed42\.json: " + pattern, err)
    assert " -- " in err
    assert not list(tmp_path.glob("figs/*"))  # no figure drawn
    assert not validate([copy], PAPER, eval_path=EVAL).blocking_passed
    assert not validate([copy], PAPER).blocking_passed  # no eval_path: found by its hash
