from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.analysis.metrics import (
    METRICS,
    exact_match,
    first_answer_span,
    first_span_match,
    legacy_contains,
    normalize,
    normalized_exact_match,
    score,
    word_boundary_contains,
)
from tests.strategies import any_text, plain_phrases, plain_texts


@pytest.mark.parametrize(
    ("text", "expected"),
    [("  The  U.S.!  ", "the us"), ("Asia", "asia"), ("a\n\tb", "a b"), ("", ""), ("...", "")],
)
def test_normalize_lowercases_drops_punctuation_and_collapses_whitespace(
    text: str, expected: str
) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("prediction", "gold", "wb", "legacy"),
    [
        ("The answer is Asia.", "Asia", True, True),
        ("Eurasia is big", "Asia", False, True),  # substring noise: legacy fires, boundary does not
        ("asian food", "Asia", False, True),
        ("United Kingdom, in Europe", "United Kingdom", True, True),
        ("Kingdom United", "United Kingdom", False, False),
        ("nothing", "Asia", False, False),
        ("anything", "", False, False),  # an empty gold never matches
    ],
)
def test_word_boundary_and_legacy_contains(
    prediction: str, gold: str, wb: bool, legacy: bool
) -> None:
    assert word_boundary_contains(prediction, gold) is wb
    assert legacy_contains(prediction, gold) is legacy


def test_exact_and_normalized_exact_match() -> None:
    assert exact_match(" Asia ", "Asia") and not exact_match("asia", "Asia")
    assert normalized_exact_match("asia.", "Asia") and not normalized_exact_match("in Asia", "Asia")


@pytest.mark.parametrize(
    ("prediction", "span"),
    [
        ("Indonesia. The capital Jakarta is here", "Indonesia."),
        ("The answer is Paris, France.\nMore", "Paris, France."),
        ("Answer: Tokyo", "Tokyo"),
        ("\n\n  A: Lima and more. Next", "Lima and more."),
        ("Asian markets grow", "Asian markets grow"),  # 'A' prefix only as a whole word
        ("", ""),
    ],
)
def test_first_answer_span_takes_first_line_sentence_without_prefix(
    prediction: str, span: str
) -> None:
    assert first_answer_span(prediction) == span


def test_first_span_match_is_the_audit_verbose_correct_rule() -> None:
    assert first_span_match("Indonesia. The capital Jakarta is located here", "Indonesia")
    assert not first_span_match("It is in Indonesia.", "Indonesia")


@given(plain_texts, plain_phrases)
def test_word_boundary_implies_legacy_contains_for_plain_text(prediction: str, gold: str) -> None:
    if word_boundary_contains(prediction, gold):
        assert legacy_contains(prediction, gold)


@given(any_text, any_text)
def test_normalized_exact_match_implies_word_boundary_for_nonempty_gold(
    prediction: str, gold: str
) -> None:
    if normalize(gold) and normalized_exact_match(prediction, gold):
        assert word_boundary_contains(prediction, gold)


@given(any_text, any_text)
def test_exact_match_implies_normalized_exact_match(prediction: str, gold: str) -> None:
    if exact_match(prediction, gold):
        assert normalized_exact_match(prediction, gold)


@given(any_text)
def test_normalize_is_idempotent(text: str) -> None:
    assert normalize(normalize(text)) == normalize(text)


@given(any_text, any_text)
def test_every_metric_returns_a_bool_on_any_unicode(prediction: str, gold: str) -> None:
    out = score(prediction, gold)
    assert set(out) == set(METRICS) and all(isinstance(v, bool) for v in out.values())


@given(plain_phrases, plain_texts, plain_texts)
def test_gold_embedded_between_spaces_is_always_found(gold: str, left: str, right: str) -> None:
    assert word_boundary_contains(f"{left} {gold} {right}", gold)


@settings(deadline=timedelta(seconds=5), max_examples=50)
@given(st.text(min_size=0, max_size=5_000))
def test_metrics_find_a_gold_at_the_end_of_a_huge_input_without_backtracking(text: str) -> None:
    """A 100k-character prediction is scored correctly, and within 5 s per example (a hang
    bound, not a speed target: catastrophic regex backtracking takes minutes, a linear scan
    milliseconds)."""
    big = text * 20
    assert word_boundary_contains(f"{big} zq9 .", "zq9")
