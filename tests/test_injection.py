"""The prefill-only hook: timing, padding, identity checks, scale correction and shuffling."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.model.activations import capture, left_pad
from harness.model.generate import generate_batch
from harness.model.injection import (
    InjectionSpec,
    PrefillInjection,
    apply_injection,
    length_buckets,
    pad_sources,
    random_directions,
    scale_correct,
    shuffle_donors,
)
from tests.model_fixtures import greedy_settings, tiny_model

PROMPTS = [[5, 17, 33, 8, 9, 40, 41], [12, 13, 14], [60, 61, 62, 63, 64], [70]]
SETTINGS = greedy_settings()


@pytest.fixture(scope="module")
def model():
    return tiny_model(7, layers=4)


@pytest.fixture(autouse=True)
def _no_hook_left_behind(model):
    """Every test leaves no forward hook on any module of the shared model."""
    yield
    leftovers = [n for n, m in model.named_modules() if m._forward_hooks]
    assert not leftovers, f"hooks left on {leftovers}"


def _block(model):
    return model.gpt_neox.layers[2]


def _generate(model, spec=None, sources=None, prompts=PROMPTS, use_cache=True, spy=None):
    """Generate ``prompts`` as one left-padded batch, optionally through the hook."""
    if spec is None:
        return generate_batch(model, prompts, SETTINGS, use_cache=use_cache), None
    _, mask, _ = left_pad(prompts, 1)
    src = pad_sources(sources, mask.shape[1])
    with PrefillInjection(_block(model), spec, src, mask) as hook:
        out = generate_batch(model, prompts, SETTINGS, use_cache=use_cache, injection=hook)
    return out, hook


def test_self_injection_is_token_identical_to_no_injection(model) -> None:
    states = capture(model, _block(model), PROMPTS, site="b", pad_id=1, batch_size=len(PROMPTS))
    plain, _ = _generate(model)
    injected, hook = _generate(model, InjectionSpec("replace"), list(states.states))
    assert injected == plain
    assert hook.fired == 1
    torch.testing.assert_close(
        torch.tensor(hook.stats["b_hidden_norm"]), torch.tensor(hook.stats["injected_norm"])
    )


def test_additive_with_scale_zero_is_token_identical_to_no_injection(model) -> None:
    sources = [torch.randn(len(p), 32, generator=torch.Generator().manual_seed(0)) for p in PROMPTS]
    plain, _ = _generate(model)
    injected, hook = _generate(model, InjectionSpec("additive", scale=0.0), sources)
    assert injected == plain and hook.stats["injected_norm"] == [0.0] * len(PROMPTS)


def test_zero_replacement_changes_the_output(model) -> None:
    plain, _ = _generate(model)
    zeros = [torch.zeros(len(p), 32) for p in PROMPTS]
    injected, _ = _generate(model, InjectionSpec("replace"), zeros)
    assert injected != plain


@pytest.mark.parametrize("use_cache", [True, False], ids=["kv-cache", "no-cache"])
def test_hook_never_touches_generated_tokens_or_padding(model, use_cache) -> None:
    block = _block(model)
    before: list[torch.Tensor] = []
    after: list[torch.Tensor] = []
    h_before = block.register_forward_hook(lambda m, a, o: before.append(o.clone()))
    zeros = [torch.zeros(len(p), 32) for p in PROMPTS]
    _, mask, _ = left_pad(PROMPTS, 1)
    src = pad_sources(zeros, mask.shape[1])
    try:
        with PrefillInjection(block, InjectionSpec("replace"), src, mask) as hook:
            h_after = block.register_forward_hook(lambda m, a, o: after.append(o.clone()))
            try:
                generate_batch(model, PROMPTS, SETTINGS, use_cache=use_cache, injection=hook)
            finally:
                h_after.remove()
    finally:
        h_before.remove()
    width = mask.shape[1]
    real = mask.bool()
    assert len(before) == len(after) == SETTINGS.max_new_tokens
    assert hook.fired == (1 if use_cache else SETTINGS.max_new_tokens)
    for step, (b, a) in enumerate(zip(before, after, strict=True)):
        if use_cache and step > 0:
            assert b.shape[1] == 1 and torch.equal(a, b)  # a generated token: untouched
            continue
        assert torch.equal(a[:, width:], b[:, width:])  # generated positions untouched
        assert torch.equal(a[:, :width][~real], b[:, :width][~real])  # padding untouched
        assert torch.count_nonzero(a[:, :width][real]) == 0  # every real position replaced


@pytest.mark.parametrize("mode", ["replace", "scale_corrected", "additive"])
def test_kv_cache_and_no_cache_give_the_same_tokens_under_injection(model, mode) -> None:
    gen = torch.Generator().manual_seed(1)
    sources = [torch.randn(len(p), 32, generator=gen) for p in PROMPTS]
    spec = InjectionSpec(mode, alpha=0.3, scale=0.5)
    cached, _ = _generate(model, spec, sources, use_cache=True)
    uncached, _ = _generate(model, spec, sources, use_cache=False)
    assert cached == uncached


def test_hook_is_removed_on_error_and_must_fire(model) -> None:
    block = _block(model)
    _, mask, _ = left_pad(PROMPTS, 1)
    src = pad_sources([torch.zeros(len(p), 32) for p in PROMPTS], mask.shape[1])
    with (
        pytest.raises(RuntimeError, match="boom"),
        PrefillInjection(block, InjectionSpec("replace"), src, mask),
    ):
        raise RuntimeError("boom")
    assert not block._forward_hooks
    with (
        pytest.raises(HarnessError, match="fired 0 time"),
        PrefillInjection(block, InjectionSpec("replace"), src, mask),
    ):
        pass


def test_a_second_prefill_without_rearming_is_an_error(model) -> None:
    ids, mask, pos = left_pad(PROMPTS, 1)
    src = pad_sources([torch.zeros(len(p), 32) for p in PROMPTS], mask.shape[1])
    with (
        pytest.raises(HarnessError, match="second multi-token forward"),
        PrefillInjection(_block(model), InjectionSpec("replace"), src, mask),
        torch.no_grad(),
    ):
        model(input_ids=ids, attention_mask=mask, position_ids=pos)
        model(input_ids=ids, attention_mask=mask, position_ids=pos)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    positions=st.integers(1, 6),
    dim=st.integers(2, 16),
    alpha=st.floats(0.0, 1.0),
)
def test_scale_correction_keeps_direction_and_native_norm(seed, positions, dim, alpha) -> None:
    gen = torch.Generator().manual_seed(seed)
    source = torch.randn(positions, dim, generator=gen, dtype=torch.float64)
    native = 50 * torch.randn(positions, dim, generator=gen, dtype=torch.float64)
    full = scale_correct(source, native, 1.0)
    torch.testing.assert_close(full.norm(dim=-1), native.norm(dim=-1))
    cos = torch.nn.functional.cosine_similarity(full, source, dim=-1)
    torch.testing.assert_close(cos, torch.ones(positions, dtype=torch.float64))
    blend = scale_correct(source, native, alpha)
    torch.testing.assert_close(blend, alpha * full + (1 - alpha) * native)


def test_apply_injection_reports_the_added_vector_for_additive() -> None:
    native = torch.ones(1, 3, 4)
    source = torch.full((1, 3, 4), 2.0)
    new, injected = apply_injection(InjectionSpec("additive", scale=0.01), native, source)
    torch.testing.assert_close(new, native + 0.02)
    torch.testing.assert_close(injected, torch.full((1, 3, 4), 0.02))


lengths_strategy = st.lists(st.integers(1, 6), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_strategy, seed=st.integers(0, 10_000))
def test_strict_shuffle_never_pairs_a_sample_with_itself_and_stays_in_its_bucket(
    lengths, seed
) -> None:
    donors, singletons = shuffle_donors(lengths, seed, strict=True)
    buckets = length_buckets(lengths)
    assert singletons == sum(1 for m in buckets.values() if len(m) == 1)
    for i, d in enumerate(donors):
        if len(buckets[lengths[i]]) == 1:
            assert d is None
        else:
            assert d is not None and d != i and lengths[d] == lengths[i]
    kept = [d for d in donors if d is not None]
    assert len(kept) == len(set(kept))  # a permutation within each bucket


@settings(max_examples=60, deadline=None)
@given(lengths=lengths_strategy, seed=st.integers(0, 10_000))
def test_full_n_shuffle_falls_back_to_self_only_for_singletons(lengths, seed) -> None:
    donors, singletons = shuffle_donors(lengths, seed, strict=False)
    strict, _ = shuffle_donors(lengths, seed, strict=True)
    assert sum(1 for i, d in enumerate(donors) if d == i) == singletons
    for i, (d, s) in enumerate(zip(donors, strict, strict=True)):
        assert d == (i if s is None else s)  # strict = full-n minus the singletons
    assert donors == shuffle_donors(lengths, seed, strict=False)[0]  # seeded


def test_random_directions_are_seeded_and_shaped_per_sample() -> None:
    a = random_directions([3, 1], 8, seed=42)
    b = random_directions([3, 1], 8, seed=42)
    c = random_directions([3, 1], 8, seed=123)
    assert [t.shape for t in a] == [(3, 8), (1, 8)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_capture_sees_bitwise_the_same_states_as_the_generation_prefill(model) -> None:
    """Why self-injection is exact: capture and prefill of the same batch agree bit for bit."""
    block = _block(model)
    acts = capture(model, block, PROMPTS, site="b", pad_id=1, batch_size=len(PROMPTS))
    seen: list[torch.Tensor] = []
    handle = block.register_forward_hook(lambda m, a, o: seen.append(o.clone()))
    try:
        generate_batch(model, PROMPTS, SETTINGS)
    finally:
        handle.remove()
    width = seen[0].shape[1]
    for row, prompt in enumerate(PROMPTS):
        assert torch.equal(seen[0][row, width - len(prompt) :], acts.states[row])


def test_mean_mode_averages_the_native_and_the_source_state() -> None:
    native, source = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    new, injected = apply_injection(InjectionSpec("mean"), native, source)
    assert torch.allclose(new, (native + source) / 2) and torch.equal(new, injected)


def test_a_last_position_mask_changes_only_each_prompts_last_token(model) -> None:
    """Last-token injection (Ramesh & Li's f at one position): with left padding the last
    column is every prompt's last real token; the hook leaves every other position as it was."""
    block = _block(model)
    before: list[torch.Tensor] = []
    after: list[torch.Tensor] = []
    _, mask, _ = left_pad(PROMPTS, 1)
    last = torch.zeros_like(mask)
    last[:, -1] = 1
    src = pad_sources([torch.full((len(p), 32), 3.0) for p in PROMPTS], mask.shape[1])
    h_before = block.register_forward_hook(lambda m, a, o: before.append(o.clone()))
    try:
        with PrefillInjection(block, InjectionSpec("replace", positions="last"), src, last) as h:
            h_after = block.register_forward_hook(lambda m, a, o: after.append(o.clone()))
            try:
                generate_batch(model, PROMPTS, SETTINGS, injection=h)
            finally:
                h_after.remove()
    finally:
        h_before.remove()
    b, a = before[0], after[0]
    width = mask.shape[1]
    assert torch.equal(a[:, : width - 1], b[:, : width - 1])  # every earlier position
    assert torch.all(a[:, width - 1] == 3.0)  # the last prompt token of every row
