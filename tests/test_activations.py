"""Activation capture: input order, length-sorted batches shared with generation."""

from __future__ import annotations

import torch

from harness.model.activations import batches, capture
from tests.model_fixtures import greedy_settings, tiny_model


def test_batches_are_length_sorted_and_cover_every_prompt_once() -> None:
    ids = [[1] * n for n in (5, 2, 9, 2, 7, 1, 5)]
    got = batches(ids, 3)
    assert [len(b) for b in got] == [3, 3, 1]
    flat = [i for b in got for i in b]
    assert sorted(flat) == list(range(len(ids)))
    assert [len(ids[i]) for i in flat] == sorted(len(t) for t in ids)
    assert flat[:3] == [5, 1, 3]  # stable: equal lengths keep input order
    assert batches(ids, 3, length_sorted=False) == [[0, 1, 2], [3, 4, 5], [6]]


def test_capture_returns_states_in_input_order_whatever_the_batching() -> None:
    model = tiny_model(4, layers=3)
    gen = torch.Generator().manual_seed(1)
    ids = [torch.randint(3, 99, (int(n),), generator=gen).tolist() for n in (6, 3, 9, 4, 9, 2)]
    module = model.gpt_neox.layers[1]
    one = capture(model, module, ids, site="s", pad_id=1, batch_size=1)
    for sort in (True, False):
        got = capture(model, module, ids, site="s", pad_id=1, batch_size=4, length_sorted=sort)
        assert got.lengths == [len(t) for t in ids]
        assert got.token_ids == tuple(tuple(t) for t in ids)
        for a, b in zip(got.states, one.states, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_packed_linears_swap_for_wide_cpu_models_and_restore_exactly(monkeypatch) -> None:
    from torch import nn

    from harness.model.activations import packed_linears
    from harness.model.generate import generate_tokens

    wide = tiny_model(5, hidden=512, layers=2, heads=8)
    before = [(n, m) for n, m in wide.named_modules() if type(m) is nn.Linear]
    gen = torch.Generator().manual_seed(2)
    ids = [torch.randint(3, 99, (int(n),), generator=gen).tolist() for n in (5, 8, 3)]
    settings = greedy_settings(6)
    with packed_linears(wide) as n:
        assert n == len(before) > 0
        assert not any(type(m) is nn.Linear for m in wide.modules())
        with packed_linears(wide) as again:  # nested: reuses the packing
            assert again == 0
        packed = generate_tokens(wide, ids, settings, batch_size=2)
    assert [(n, m) for n, m in wide.named_modules() if type(m) is nn.Linear] == before
    monkeypatch.setenv("HARNESS_PACK_LINEAR", "0")
    with packed_linears(wide) as n:
        assert n == 0
    plain = generate_tokens(wide, ids, settings, batch_size=2)
    assert packed == plain
    module = wide.gpt_neox.layers[0]
    a = capture(wide, module, ids, site="s", pad_id=1)
    monkeypatch.delenv("HARNESS_PACK_LINEAR")
    b = capture(wide, module, ids, site="s", pad_id=1)
    for x, y in zip(a.states, b.states, strict=True):
        torch.testing.assert_close(x, y, atol=1e-3, rtol=1e-3)  # float rounding only
    small = tiny_model(6)  # 32 wide: never packed
    with packed_linears(small) as n:
        assert n == 0
