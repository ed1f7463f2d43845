"""Appendix B -- Validation state of the final run."""

from __future__ import annotations

import pytest

from harness.analysis.evalset import load_evalset
from harness.conditions import PRIMARY_CONDITIONS, STRICT_CONDITIONS
from harness.io import sha256_file
from harness.sources import Source
from harness.spec.jobs import expected


def _paper_grid(source: Source, *, strict: bool = False) -> None:
    """Skip a source whose protocol does not run the paper's grid (e.g. the withheld regime)."""
    run = source.protocol.run
    want = set(PRIMARY_CONDITIONS) | (set(STRICT_CONDITIONS) if strict else set())
    have = set(run.conditions) | (set(run.strict_conditions) if strict else set())
    if have != want:
        pytest.skip(f"{source.name}'s protocol does not run the paper's grid")


def test_main_grid_validation_passes_with_every_expected_file(source: Source, measured) -> None:
    """ "Main final directory: 21 of 21 expected files present, blocking checks pass." -- the
    main grid's files only (appendix, strict and extension files have their own claims)."""
    _paper_grid(source)
    rep = source.validation_main
    msg = measured(
        f"{rep.present_files} of {rep.expected_files} files; blocking "
        f"{'pass' if rep.blocking_passed else 'FAIL'}"
    )
    assert rep.present_files == rep.expected_files == 21 and rep.blocking_passed, (
        f"{msg}: {[f'{c.name}: {c.detail}' for c in rep.failures()]}"
    )


def test_validation_with_strict_controls_passes_with_24_of_24_files(
    source: Source, measured
) -> None:
    """ "Final directory plus strict matched controls: 24 of 24 expected files present,
    blocking checks pass." """
    _paper_grid(source, strict=True)
    rep = source.validation
    msg = measured(
        f"{rep.present_files} of {rep.expected_files} files; blocking "
        f"{'pass' if rep.blocking_passed else 'FAIL'}"
    )
    assert rep.present_files == rep.expected_files == 24 and rep.blocking_passed, (
        f"{msg}: {[f'{c.name}: {c.detail}' for c in rep.failures()]}"
    )


def test_appendix_control_files_have_full_rows_the_eval_hash_and_no_mismatches(
    source: Source, measured
) -> None:
    """The appendix files beside the grid (reverse-direction controls, zero replacement), from
    the artifact (the paper's text lists them only in Appendix C's table): each holds every
    eval row once, the clean-eval hash, and zero sequence or token mismatches, in its
    summary and in every row."""
    grid = set(expected(source.protocol, ("primary", "strict", "extension"), every_extension=True))
    files = [f for f in source.results if f.name not in grid]
    bad = []
    for f in files:
        ids = [r["sample_id"] for r in f.per_sample]
        flags = [r.get(k) for r in f.per_sample for k in ("token_ids_match", "seq_len_match")]
        if (
            f.n != source.protocol.eval.n
            or len(set(ids)) != len(ids)
            or f.config.get("clean_eval_hash") != source.protocol.eval.sha256
            or f.diagnostics["seq_len_mismatch_count"]
            or f.diagnostics["token_mismatch_count"]
            or False in flags
        ):
            bad.append(f.name)
    msg = measured(f"{len(files)} appendix files, {len(bad)} with a problem")
    assert not bad, f"{msg}: {bad}"


def test_clean_eval_file_reproduces_the_frozen_sha256(source: Source, measured) -> None:
    """ "Clean-eval rebuild test: row count 396, acceptance flag true, and frozen SHA-256 hash
    reproduced." """
    assert source.eval_path is not None and source.eval_path.is_file(), "eval file missing"
    digest = sha256_file(source.eval_path)
    rows = sum(
        1 for line in source.eval_path.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    msg = measured(f"SHA-256 {digest[:12]}..., {rows} rows")
    assert digest == source.protocol.eval.sha256, msg
    assert rows == source.protocol.eval.n, msg


def test_every_result_file_carries_the_clean_eval_hash(source: Source, measured) -> None:
    """ "The hash is recorded in every final result JSON and checked by the validation
    script." """
    bad = [
        f.name
        for f in source.results
        if f.config.get("clean_eval_hash") != source.protocol.eval.sha256
    ]
    msg = measured(f"{len(source.results) - len(bad)} of {len(source.results)} files")
    assert not bad, f"{msg}; wrong in {bad}"


def _eval_rows(source: Source):
    assert source.eval_path is not None, "eval file missing"
    return load_evalset(source.eval_path, source.protocol.eval.sha256).rows


def test_every_result_file_holds_clean_eval_ids_and_golds(source: Source, measured) -> None:
    """ "The final clean evaluation set has 396 rows" and every result file is an evaluation
    of it (Section 3.1; issue #27, item 6: every file, appendix and extension files too, not
    only the grid the validator reads): each row's sample id is a clean-eval id at the
    eval position its ``idx`` names, each id appears once, the gold answer is the eval's, and
    every file except the strict controls (whose subset has its own claim) holds all rows."""
    rows = _eval_rows(source)
    bad = []
    for f in source.results:
        ids = [r["sample_id"] for r in f.per_sample]
        wrong = [
            r["sample_id"]
            for r in f.per_sample
            if not (
                isinstance(r.get("idx"), int)
                and 0 <= r["idx"] < len(rows)
                and rows[r["idx"]].sample_id == r["sample_id"]
                and rows[r["idx"]].answer == r["gold"]
            )
        ]
        strict = f.condition == "shuffled_translation_strict_matched"
        if wrong or len(ids) != len(set(ids)) or (not strict and f.n != len(rows)):
            bad.append(
                f"{f.name}: {len(wrong)} rows off the eval (e.g. {wrong[:2]}), "
                f"{len(ids) - len(set(ids))} repeated, n {f.n}"
            )
    msg = measured(f"{len(source.results)} files against {len(rows)} eval rows; {len(bad)} off")
    assert not bad, f"{msg}: {bad[:4]}"


def test_every_result_file_decodes_greedily_with_the_stated_settings(
    source: Source, measured
) -> None:
    """ "Receiver decoding is greedy. It uses 64 new tokens, repetition penalty 1.3, and a
    no-repeat 3-gram constraint. The natural-language sender relay uses 128 new tokens."
    (Section 3.3) -- in every file (issue #27, item 6: appendix and extension files too):
    ``config.generation`` is exactly the protocol's receiver settings and
    ``config.sender_generation``, wherever recorded (the relay must record it), the relay's."""
    want = source.protocol.decoding.generation_config()
    relay = source.protocol.decoding.relay_generation_config()
    bad = []
    for f in source.results:
        gen, sender = f.config.get("generation"), f.config.get("sender_generation")
        if gen != want or (sender is not None and sender != relay):
            bad.append(f"{f.name}: {gen} / sender {sender}")
        elif f.condition == "nl_relay" and sender is None:
            bad.append(f"{f.name}: the relay records no sender settings")
    msg = measured(f"{len(source.results)} files; {len(bad)} decoded otherwise")
    assert not bad, f"{msg}; expected {want}, sender {relay}: {bad[:3]}"


def test_sequence_and_token_mismatch_counts_are_zero(source: Source, measured) -> None:
    """ "Sequence and token mismatch counts are zero." -- each file's counts, and every row's
    ``seq_len_match`` / ``token_ids_match`` flag, which the counts must agree with."""
    bad = {}
    rows = 0
    for f in source.results:
        seq_rows = sum(1 for r in f.per_sample if r.get("seq_len_match") is False)
        tok_rows = sum(1 for r in f.per_sample if r.get("token_ids_match") is False)
        rows += len(f.per_sample)
        counts = (f.diagnostics["seq_len_mismatch_count"], f.diagnostics["token_mismatch_count"])
        if counts != (0, 0) or (seq_rows, tok_rows) != (0, 0):
            bad[f.name] = {"recorded": counts, "in rows": (seq_rows, tok_rows)}
    msg = measured(f"{len(bad)} of {len(source.results)} files with a mismatch ({rows} rows)")
    assert not bad, f"{msg}: {bad}"


def test_decoding_parameters_are_serialised_as_the_protocol_says(source: Source, measured) -> None:
    """ "Receiver decoding is greedy. It uses 64 new tokens, repetition penalty 1.3, and a
    no-repeat 3-gram constraint. The natural-language sender relay uses 128 new tokens. These
    values are serialized into result files and checked during validation." """
    check = next(c for c in source.validation.checks if c.name == "decoding_parameters")
    gens = sorted({str(sorted(f.config["generation"].items())) for f in source.results})
    msg = measured(f"{len(gens)} distinct setting(s): {gens[0] if len(gens) == 1 else gens}")
    assert check.passed, f"{msg}; {check.detail}"
