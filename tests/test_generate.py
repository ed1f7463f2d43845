"""Greedy generation: equals Hugging Face at batch size 1, and batching changes nothing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.model.generate import (
    GenerationSettings,
    _NgramBan,
    decode_new,
    generate_batch,
    generate_tokens,
)
from tests.model_fixtures import build_char_tokenizer, tiny_model

TEXTS = [
    "Context: Bob works in Tokyo. Tokyo is in Japan.\nQ: Where does Bob work?\nA:",
    "Hi",
    "Context: abc abc abc abc\nQ: x?\nA:",
    "zzzz zz",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_char_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def model():
    return tiny_model(3, layers=3)


def _settings(n=12, eos=0):
    return GenerationSettings(
        max_new_tokens=n,
        repetition_penalty=1.3,
        no_repeat_ngram_size=3,
        eos_token_id=eos,
        pad_token_id=1,
    )


def test_batch_of_one_equals_hugging_face_generate(model, tok) -> None:
    settings = _settings()
    for text in TEXTS:
        ids = tok(text).input_ids
        ours = generate_batch(model, [ids], settings)[0]
        hf = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=settings.max_new_tokens,
            do_sample=False,
            repetition_penalty=1.3,
            no_repeat_ngram_size=3,
            eos_token_id=0,
            pad_token_id=1,
        )[0, len(ids) :].tolist()
        if 0 in hf:
            hf = hf[: hf.index(0)]
        assert ours == hf, text


@pytest.mark.parametrize("batch_size", [2, 4])
def test_left_padded_batches_equal_batch_size_one(model, tok, batch_size) -> None:
    prompts = [tok(t).input_ids for t in TEXTS]
    settings = _settings()
    single = generate_tokens(model, prompts, settings, batch_size=1)
    assert generate_tokens(model, prompts, settings, batch_size=batch_size) == single
    assert (
        generate_tokens(model, prompts, settings, batch_size=batch_size, use_cache=False) == single
    )


def test_length_sorted_buckets_keep_input_order_and_pad_less(model, tok) -> None:
    """Batches are built from prompts sorted by length; results come back in input order and
    equal unsorted batching; the injection factory sees each batch's original indices."""
    prompts = [tok(t).input_ids for t in TEXTS * 2]
    settings = _settings()
    seen: list[tuple[list[int], int]] = []

    def factory(idx, mask):
        seen.append((list(idx), int(mask.shape[1])))
        return contextlib.nullcontext()

    plain = generate_tokens(model, prompts, settings, batch_size=3, length_sorted=False)
    out = generate_tokens(model, prompts, settings, batch_size=3, injection=factory)
    assert out == plain
    assert sorted(i for idx, _ in seen for i in idx) == list(range(len(prompts)))
    lengths = [len(prompts[i]) for idx, _ in seen for i in idx]
    assert lengths == sorted(lengths)
    assert [w for _, w in seen] == [max(len(prompts[i]) for i in idx) for idx, _ in seen]
    padded = sum(len(idx) * w for idx, w in seen)
    unsorted = sum(
        len(prompts[i : i + 3]) * max(map(len, prompts[i : i + 3]))
        for i in range(0, len(prompts), 3)
    )
    assert padded < unsorted


def test_eos_ends_a_row_and_is_not_part_of_the_answer(model, tok) -> None:
    prompts = [tok(t).input_ids for t in TEXTS]
    free = generate_tokens(model, prompts, _settings(eos=None), batch_size=4)
    stop = free[0][2]  # make the first prompt's third token the eos
    out = generate_tokens(model, prompts, _settings(eos=stop), batch_size=4)
    assert out[0] == free[0][:2]
    for row, full in zip(out[1:], free[1:], strict=True):
        cut = full.index(stop) if stop in full else len(full)
        assert row == full[:cut]


def test_ngram_ban_matches_the_no_repeat_rule() -> None:
    ban = _NgramBan(3, [1, 2, 3, 1])
    assert ban.banned() == []  # (3, 1) never seen before
    ban.push(2)
    assert ban.banned() == [3]  # (1, 2) -> 3 already occurred
    assert _NgramBan(3, [7]).banned() == []


def test_decoded_answer_is_new_tokens_only_without_specials_and_stripped(tok) -> None:
    new = [*tok("  Japan ").input_ids, 0]
    assert decode_new(tok, new) == "Japan"


def test_settings_come_from_the_protocol(tmp_path: Path, tok) -> None:
    from harness.protocol import load_protocol

    proto = load_protocol("paper")
    s = GenerationSettings.from_protocol(proto.decoding, tok)
    r = GenerationSettings.from_protocol(proto.decoding, tok, relay=True)
    assert (s.max_new_tokens, r.max_new_tokens) == (64, 128)
    assert (s.repetition_penalty, s.no_repeat_ngram_size) == (1.3, 3)
    assert (s.eos_token_id, s.pad_token_id) == (0, 1)


def test_the_in_place_kv_cache_matches_the_default_cache_and_never_reallocates(
    model, tok, monkeypatch
) -> None:
    import harness.model.generate as G

    prompts = [tok(t).input_ids for t in TEXTS]
    settings = _settings(eos=None)
    made = []
    real = G._growing_cache

    def spy(m, reserve):
        cache = real(m, reserve)
        made.append(cache)
        return cache

    monkeypatch.setattr(G, "_growing_cache", spy)
    ours = generate_batch(model, prompts, settings)
    (cache,) = made
    width = max(len(p) for p in prompts)
    assert len(cache.layers) == 3
    for layer in cache.layers:
        k, v = layer._buf
        assert k.shape[-2] == v.shape[-2] == width + settings.max_new_tokens  # one allocation
        assert layer.keys.data_ptr() == k.data_ptr() and layer.values.data_ptr() == v.data_ptr()
        assert layer._n == width + 11
    monkeypatch.setattr(G, "_growing_cache", lambda m, reserve: None)  # transformers' cache
    assert generate_batch(model, prompts, settings) == ours


def test_nan_logits_stop_generation_with_a_one_line_error(tok) -> None:
    from harness.errors import HarnessError

    broken = tiny_model(3, layers=3)
    with torch.no_grad():
        broken.get_output_embeddings().weight[5] = float("nan")  # one vocabulary row: every row NaN
    prompts = [tok(t).input_ids for t in TEXTS]
    with pytest.raises(HarnessError, match=r"NaN/inf logits at generation step 0 .*\[0, 1, 2, 3\]"):
        generate_batch(broken, prompts, _settings())


class _PastKeyValuesModel(torch.nn.Module):
    """A model with the pre-5.20 transformers calling convention: the KV cache goes in as
    ``past_key_values`` and comes back as ``.past_key_values`` (no ``cache``)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config
        self.calls: list[str] = []

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(
        self, input_ids, attention_mask, position_ids, use_cache, past_key_values=None, **kw
    ):
        from types import SimpleNamespace

        self.calls.append("pkv" if past_key_values is not None else "none")
        res = self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            cache=past_key_values,
            **kw,
        )
        return SimpleNamespace(logits=res.logits, past_key_values=res.cache)


def test_generation_speaks_the_past_key_values_convention_of_older_transformers(model, tok):
    from harness.model.generate import cache_keyword

    old = _PastKeyValuesModel(model)
    assert cache_keyword(model) == "cache" and cache_keyword(old) == "past_key_values"
    ids = [tok(t).input_ids for t in TEXTS]
    assert generate_batch(old, ids, _settings()) == generate_batch(model, ids, _settings())
    assert old.calls[0] == "pkv" and old.calls[1:] and set(old.calls[1:]) == {"pkv"}


def test_a_single_inf_logit_is_caught_and_its_row_named() -> None:
    from harness.errors import HarnessError
    from harness.model.generate import _finite

    logits = torch.randn(4, 50)
    assert _finite(logits, 3) is logits
    for bad in (float("inf"), float("-inf"), float("nan")):
        broken = logits.clone()
        broken[2, 17] = bad
        with pytest.raises(HarnessError, match=r"step 3 for batch row\(s\) \[2\]"):
            _finite(broken, 3)


def test_an_empty_prompt_is_refused_with_a_one_line_error(model, tok) -> None:
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="prompt 1 of the batch has no tokens"):
        generate_batch(model, [tok("Hi").input_ids, []], _settings())


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    steps=st.integers(0, 6),
    penalty=st.sampled_from([1.3, 0.7, 2.0]),
    seed=st.integers(0, 2**16),
)
def test_sparse_repetition_penalty_equals_hugging_face_on_real_tokens(
    lengths, steps, penalty, seed
) -> None:
    """Gather-penalise-scatter over each row's real history gives bitwise the scores of HF's
    processor run on that row alone (padding never counts, finished rows add nothing)."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    from harness.model.activations import left_pad
    from harness.model.generate import _RepetitionPenalty

    gen = torch.Generator().manual_seed(seed)
    vocab = 23
    prompts = [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in lengths]
    ids, mask, _ = left_pad(prompts, pad_id=vocab - 1)  # the pad id is a real token too
    pen = _RepetitionPenalty(ids, mask, steps, penalty)
    hist = [list(p) for p in prompts]
    done = torch.zeros(len(prompts), dtype=torch.bool)
    hf = RepetitionPenaltyLogitsProcessor(penalty)
    for _ in range(steps + 1):
        scores = torch.randn(len(prompts), vocab, generator=gen)
        ours = scores.clone()
        pen.apply(ours)
        for row, h in enumerate(hist):
            ref = hf(torch.tensor([h]), scores[row : row + 1].clone())[0]
            assert torch.equal(ours[row], ref)
        if pen.n == ids.shape[1] + steps:
            break
        nxt = torch.randint(0, vocab, (len(prompts),), generator=gen)
        pen.push(nxt, done)
        for row, (tok_id, finished) in enumerate(zip(nxt.tolist(), done.tolist(), strict=True)):
            if not finished:
                hist[row].append(tok_id)
        done = done | (torch.rand(len(prompts), generator=gen) < 0.3)
