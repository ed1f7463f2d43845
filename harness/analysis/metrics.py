"""Answer-matching metrics, recomputed from ``prediction`` and ``gold``.

Roles follow the paper (Section 3.4): exact match is strict, word-boundary containment of the
normalised gold in the normalised prediction is the primary lenient metric, legacy substring
containment is kept for continuity and as the audit target, and first-answer-span match is
used only by the metric-disagreement audit.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable

__all__ = [
    "METRICS",
    "PRIMARY_METRIC",
    "exact_match",
    "first_answer_span",
    "first_span_match",
    "legacy_contains",
    "normalize",
    "normalized_exact_match",
    "score",
    "word_boundary_contains",
]

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)
_WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lowercase, strip, drop ``string.punctuation`` and collapse whitespace."""
    text = text.lower().strip().translate(_PUNCT_TABLE)
    return _WS.sub(" ", text).strip()


def exact_match(prediction: str, gold: str) -> bool:
    """Strict match: the stripped prediction equals the stripped gold."""
    return prediction.strip() == gold.strip()


def normalized_exact_match(prediction: str, gold: str) -> bool:
    """The normalised prediction equals the normalised gold."""
    return normalize(prediction) == normalize(gold)


def word_boundary_contains(prediction: str, gold: str) -> bool:
    """The normalised gold occurs as whole words inside the normalised prediction (primary)."""
    g = normalize(gold)
    if not g:
        return False
    return re.search(r"(?<!\w)" + re.escape(g) + r"(?!\w)", normalize(prediction)) is not None


def legacy_contains(prediction: str, gold: str) -> bool:
    """Historical substring rule: lowercase gold anywhere in the lowercase prediction."""
    g = gold.strip().lower()
    if not g:
        return False
    return g in prediction.lower()


_ANSWER_PREFIXES = (
    "the final answer is",
    "the answer is",
    "final answer",
    "answer is",
    "answer",
    "a",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def first_answer_span(prediction: str) -> str:
    """The first non-empty line, cut at its first sentence end, with answer prefixes removed."""
    lines = [ln.strip() for ln in prediction.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    span = _SENTENCE_END.split(lines[0], maxsplit=1)[0].strip()
    lowered = span.lower()
    for prefix in _ANSWER_PREFIXES:
        if lowered.startswith(prefix) and (
            len(lowered) == len(prefix) or not lowered[len(prefix)].isalnum()
        ):
            span = span[len(prefix) :].lstrip(" :,-")
            break
    return span.strip()


def first_span_match(prediction: str, gold: str) -> bool:
    """The first answer span, normalised, equals the normalised gold."""
    return normalize(first_answer_span(prediction)) == normalize(gold)


METRICS: dict[str, Callable[[str, str], bool]] = {
    "exact_match": exact_match,
    "normalized_exact_match": normalized_exact_match,
    "word_boundary_contains": word_boundary_contains,
    "legacy_contains": legacy_contains,
    "first_span_match": first_span_match,
}
PRIMARY_METRIC = "word_boundary_contains"


def score(prediction: str, gold: str) -> dict[str, bool]:
    """Every metric for one prediction."""
    return {name: fn(prediction, gold) for name, fn in METRICS.items()}
