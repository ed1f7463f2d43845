"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

import string

from hypothesis import strategies as st

ascii_words = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
# Plain phrases: alphanumeric words joined by single spaces (no punctuation, no odd spacing).
plain_phrases = st.lists(ascii_words, min_size=1, max_size=4).map(" ".join)
plain_texts = st.lists(ascii_words, min_size=0, max_size=20).map(" ".join)
any_text = st.text(max_size=200)
# Paired per-sample deltas of 0/1 outcomes.
deltas = st.lists(st.sampled_from([-1.0, 0.0, 1.0]), min_size=1, max_size=300)

# --- error-path fuzzing (tests/test_fuzz.py) ---
# Any JSON value, including NaN/inf floats, huge strings and nesting.
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.text(min_size=1, max_size=8).map(lambda s: s * 1000)  # huge strings
)
json_values = st.recursive(
    json_scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=5)
    ),
    max_leaves=20,
)
# Lines of an eval JSONL: raw unicode, JSON of any shape, or rows with some fields present.
eval_row_fields = st.fixed_dictionaries(
    {},
    optional={
        "context": json_scalars,
        "question": json_scalars,
        "answer": json_scalars,
        "clean_eval_id": json_values,
        "hops": json_values,
    },
)

# --- protocol mutation (tests/test_protocol_fuzz.py) ---
# Values a careless edit of a protocol TOML might leave: any type, out-of-range numbers,
# NaN/inf, templates with stray braces or unknown placeholders, odd lists.
toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=True, allow_infinity=True, width=64)
    | st.sampled_from(["", "{context}", "{question}", "{relay} {", "}", "{x}", "prefill_only"])
    | st.text(max_size=12)
)
toml_values = toml_scalars | st.lists(
    st.integers(-5, 500) | st.sampled_from(["fwd", "rev", "no_inject", "additive", "zzz"]),
    max_size=4,
)


def toml_literal(value: object) -> str:
    """A TOML literal for the scalars and lists above."""
    import json
    import math

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise TypeError(type(value))
