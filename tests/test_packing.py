"""The CPU fast path: packed weights, fused GELU and real-rows-only prefill are exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.model import packing
from harness.model.activations import capture
from harness.model.generate import generate_tokens
from harness.model.packing import (
    PackedLinear,
    _gelu_algorithm,
    _packed,
    packed_linears,
    real_rows_only,
)
from tests.model_fixtures import greedy_settings, tiny_model

pytestmark = pytest.mark.skipif(
    not packing._pointwise_linear_available(), reason="this torch has no oneDNN pointwise linear"
)


@pytest.fixture(scope="module")
def wide():
    return tiny_model(5, hidden=512, layers=2, heads=8)


def _prompts(*lengths: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(2)
    return [torch.randint(3, 99, (n,), generator=gen).tolist() for n in lengths]


SETTINGS = greedy_settings()


def test_fused_erf_gelu_is_bitwise_the_linear_then_gelu() -> None:
    gen = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 256)
    x = 3 * torch.randn(40, 64, generator=gen)
    plain = PackedLinear(lin)
    with torch.inference_mode():
        y = plain(x)
        torch.testing.assert_close(y, lin(x))
        assert torch.equal(PackedLinear(lin, post="gelu", algorithm="none")(x), F.gelu(y))
        tanh = PackedLinear(lin, post="gelu", algorithm="tanh")(x)  # close, not bitwise:
        torch.testing.assert_close(tanh, F.gelu(y, approximate="tanh"))  # so never fused


def test_a_tanh_gelu_mlp_is_packed_but_not_fused_and_still_exact_on_real_rows(
    monkeypatch,
) -> None:
    model = tiny_model(5, hidden=512, layers=2, heads=8)
    for layer in model.gpt_neox.layers:
        layer.mlp.act = nn.GELU(approximate="tanh")
    with packed_linears(model):
        mlp = model.gpt_neox.layers[0].mlp
        assert isinstance(mlp.act, nn.GELU) and mlp.dense_h_to_4h.post == "none"
    ids = _prompts(6, 2, 9)
    module = model.gpt_neox.layers[1]
    rows = capture(model, module, ids, site="s", pad_id=1)
    monkeypatch.setattr("harness.model.activations.real_rows_only", lambda mask: _null())
    padded = capture(model, module, ids, site="s", pad_id=1)
    assert all(torch.equal(a, b) for a, b in zip(rows.states, padded.states, strict=True))


def test_gelu_detection_accepts_only_exact_gelu() -> None:
    from transformers.activations import ACT2FN

    assert _gelu_algorithm(ACT2FN["gelu"]) == "none"
    assert _gelu_algorithm(nn.GELU(approximate="tanh")) == "tanh"
    assert _gelu_algorithm(ACT2FN["gelu_python"]) is None  # erf in Python: not bitwise F.gelu
    assert _gelu_algorithm(nn.ReLU()) is None
    assert _gelu_algorithm(nn.SiLU()) is None


def test_packing_fuses_the_mlp_gelu_and_restores_every_module(wide) -> None:
    mlp = wide.gpt_neox.layers[0].mlp
    act, fc = mlp.act, mlp.dense_h_to_4h
    with packed_linears(wide) as n:
        assert n == 2 * 4 + 1  # 4 linears per block and the LM head
        assert isinstance(mlp.act, nn.Identity)
        assert mlp.dense_h_to_4h.post == "gelu" and mlp.dense_h_to_4h.algorithm == "none"
        assert wide.gpt_neox.layers[0].attention.dense.post == "none"
    assert mlp.act is act and mlp.dense_h_to_4h is fc


def test_real_rows_only_multiplies_only_the_real_positions(wide, monkeypatch) -> None:
    from harness.model.activations import left_pad

    ids = _prompts(9, 3, 6, 1, 9)
    calls: list[tuple[int, ...]] = []
    orig = PackedLinear._product

    def spy(self, x):
        calls.append(tuple(x.shape))
        return orig(self, x)

    monkeypatch.setattr(PackedLinear, "_product", spy)
    tok, mask, pos = left_pad(ids, 1)
    between: list[tuple[int, ...]] = []
    with packed_linears(wide), torch.inference_mode(), real_rows_only(mask):
        act = wide.gpt_neox.layers[0].mlp.act  # the fused GELU's stand-in
        act.register_forward_hook(lambda m, args, out: between.append(tuple(out.shape)))
        out = wide(input_ids=tok, attention_mask=mask, position_ids=pos).logits
    assert len(calls) == 2 * 4 + 1  # every block linear and the LM head (all positions)
    assert all(s == (sum(len(t) for t in ids), s[1]) for s in calls)  # 28 real rows, not 45
    assert between == [(28, 4 * 512)]  # the MLP's intermediate stays compact
    assert torch.isfinite(out).all()
    assert (out[mask == 0] == 0).all()  # padding positions: zeros, never read


def test_real_rows_only_changes_no_generated_token(wide, monkeypatch) -> None:
    ids = _prompts(7, 2, 5, 7, 1, 4)
    with_rows = generate_tokens(wide, ids, SETTINGS, batch_size=3, length_sorted=False)
    monkeypatch.setattr("harness.model.generate.real_rows_only", lambda mask: _null())
    monkeypatch.setattr("harness.model.activations.real_rows_only", lambda mask: _null())
    without = generate_tokens(wide, ids, SETTINGS, batch_size=3, length_sorted=False)
    assert with_rows == without
    module = wide.gpt_neox.layers[0]
    a = capture(wide, module, ids, site="s", pad_id=1, batch_size=3)
    monkeypatch.undo()
    b = capture(wide, module, ids, site="s", pad_id=1, batch_size=3)
    assert all(torch.equal(x, y) for x, y in zip(a.states, b.states, strict=True))


def _null():
    from contextlib import nullcontext

    return nullcontext()


def test_real_rows_only_is_a_no_op_without_padding() -> None:
    with real_rows_only(torch.ones(3, 4, dtype=torch.long)):
        assert packing._ROWS.get() is None
    with real_rows_only(torch.tensor([[0, 1], [1, 1]])):
        rows = packing._ROWS.get()
        assert rows is not None and rows.real.tolist() == [1, 2, 3] and rows.pad.tolist() == [0]
    assert packing._ROWS.get() is None


def test_packed_weights_are_reused_until_the_weight_changes() -> None:
    lin = nn.Linear(32, 48)
    x = torch.randn(5, 32)
    first = _packed(lin, "none", "")
    again = _packed(lin, "none", "")
    assert again.weight is first.weight  # reordered once
    with torch.no_grad():
        lin.weight.add_(1.0)  # in place: the version counter moves
    changed = _packed(lin, "none", "")
    assert changed.weight is not first.weight
    with torch.inference_mode():
        torch.testing.assert_close(changed(x), lin(x))
    lin.weight = nn.Parameter(torch.zeros(48, 32))  # a new tensor: new storage
    with torch.inference_mode():
        torch.testing.assert_close(_packed(lin, "none", "")(x), lin(x))


def test_heap_tuning_applies_once_and_can_be_turned_off(monkeypatch) -> None:
    import platform

    monkeypatch.setattr(packing, "_heap_tuned", None)
    monkeypatch.setenv("HARNESS_MALLOC_TUNE", "0")
    assert packing.keep_freed_memory() is False
    monkeypatch.setattr(packing, "_heap_tuned", None)
    monkeypatch.delenv("HARNESS_MALLOC_TUNE")
    applied = packing.keep_freed_memory()
    assert applied is (platform.libc_ver()[0] == "glibc")
    assert packing.keep_freed_memory() is applied  # once: the second call changes nothing
