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
