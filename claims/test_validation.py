"""Appendix B -- Validation state of the final run."""

from __future__ import annotations

from harness.io import sha256_file
from harness.sources import Source


def test_main_grid_validation_passes_with_every_expected_file(source: Source) -> None:
    """ "Main final directory: 21 of 21 expected files present, blocking checks pass." """
    rep = source.validation_main
    assert rep.present_files == rep.expected_files == 21 and rep.blocking_passed, rep.failures()


def test_validation_with_strict_controls_passes_with_24_of_24_files(source: Source) -> None:
    """ "Final directory plus strict matched controls: 24 of 24 expected files present,
    blocking checks pass." """
    rep = source.validation
    assert rep.present_files == rep.expected_files == 24 and rep.blocking_passed, rep.failures()


def test_clean_eval_file_reproduces_the_frozen_sha256(source: Source) -> None:
    """ "Clean-eval rebuild test: row count 396, acceptance flag true, and frozen SHA-256 hash
    reproduced." """
    assert source.eval_path is not None and source.eval_path.is_file(), "eval file missing"
    assert sha256_file(source.eval_path) == source.protocol.eval.sha256
    rows = sum(
        1 for line in source.eval_path.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    assert rows == source.protocol.eval.n


def test_every_result_file_carries_the_clean_eval_hash(source: Source) -> None:
    """ "The hash is recorded in every final result JSON and checked by the validation
    script." """
    bad = [
        f.name
        for f in source.results
        if f.config.get("clean_eval_hash") != source.protocol.eval.sha256
    ]
    assert not bad, bad


def test_sequence_and_token_mismatch_counts_are_zero(source: Source) -> None:
    """ "Sequence and token mismatch counts are zero." """
    bad = {
        f.name: (f.diagnostics["seq_len_mismatch_count"], f.diagnostics["token_mismatch_count"])
        for f in source.results
        if f.diagnostics["seq_len_mismatch_count"] or f.diagnostics["token_mismatch_count"]
    }
    assert not bad, bad


def test_decoding_parameters_are_serialised_as_the_protocol_says(source: Source) -> None:
    """ "Receiver decoding is greedy. It uses 64 new tokens, repetition penalty 1.3, and a
    no-repeat 3-gram constraint. The natural-language sender relay uses 128 new tokens. These
    values are serialized into result files and checked during validation." """
    check = next(c for c in source.validation.checks if c.name == "decoding_parameters")
    assert check.passed, check.detail
