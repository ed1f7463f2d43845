"""The mini tokenizer loads through AutoTokenizer and round-trips the prompt formats."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from harness.mini import task
from harness.protocol import load_protocol


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    proto = load_protocol("mini")
    return AutoTokenizer.from_pretrained(proto.resolve_path(proto.models.tokenizer))


def test_special_tokens_are_defined(tok):
    assert tok.eos_token_id is not None and tok.pad_token_id is not None
    assert tok.bos_token_id is not None and tok.pad_token_id != tok.eos_token_id


def test_prompts_round_trip_exactly_without_unknown_tokens(tok):
    rng = random.Random(3)
    for h in (1, 2, 3, 4, 1, 2, 3, 4):
        ex = task.make_example(rng, h)
        for text in (ex.prompt + " " + ex.answer, ex.context + "\n\nKey facts:"):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.unk_token_id not in ids
            assert tok.decode(ids) == text


def test_names_and_relation_phrases_are_single_tokens(tok):
    for names in task.LEXICON.values():
        for w in names:
            assert len(tok(" " + w, add_special_tokens=False)["input_ids"]) == 1
    for p in task.RELATION_PHRASES:
        assert len(tok(" " + p, add_special_tokens=False)["input_ids"]) == 1


def test_left_padding_pads_on_the_left(tok):
    tok.padding_side = "left"
    enc = tok(["Context: A\nQ: B\nA:", "A:"], padding=True, add_special_tokens=False)
    assert enc["input_ids"][1][0] == tok.pad_token_id and enc["attention_mask"][1][0] == 0


def test_strict_n_counts_rows_in_shared_prompt_length_buckets(tok):
    proto = load_protocol("mini")
    rows = task.build_eval_rows()
    lengths = [len(tok(task.format_prompt(r["context"], r["question"]))["input_ids"]) for r in rows]
    counts = Counter(lengths)
    assert sum(1 for n in lengths if counts[n] >= 2) == proto.eval.strict_n
    assert len(counts) >= 8  # varied prompt lengths


def test_rebuilding_the_tokenizer_reproduces_the_shipped_files(tmp_path):
    from harness.mini.tokenizer_build import TOKENIZER_DIR, build_tokenizer

    build_tokenizer(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (TOKENIZER_DIR / name).read_bytes()
