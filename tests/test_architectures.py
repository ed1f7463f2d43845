"""The architecture table on every family: detection, blocks, the CPU fast paths, a tiny grid.

A test that takes ``family`` runs once per family of the table (tiny random models; the
fixture is declared in ``tests/conftest.py``), so a family that loses a fast path, or no longer
runs end to end, fails here by name.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.analysis.results import ResultSet
from harness.analysis.validate import validate
from harness.errors import HarnessError
from harness.model import packing
from harness.model.activations import capture, left_pad
from harness.model.arch import (
    ARCHS,
    arch_of,
    block_list,
    blocks_above,
    make_config,
    mlp_modules,
    only_blocks,
)
from harness.model.models import resolve_block
from harness.model.packing import PackedLinear, packed_linears, real_rows_only
from harness.protocol import load_protocol
from harness.run.runner import run_protocol
from tests.model_fixtures import EVAL_ROWS, FAMILIES, build_tiny_experiment, tiny_model

# What each family's tiny model must look like: (block path, linears per block, MLP input
# linears kept compact, MLP output linear, GELU fused). Written from the transformers
# modules, not read from the table, so a wrong table entry fails here.
EXPECTED = {
    "gpt_neox": ("gpt_neox.layers", 4, ("dense_h_to_4h",), "dense_4h_to_h", True),
    "gpt2": ("transformer.h", 0, (), None, False),  # Conv1D layers: only the LM head packs
    "llama": ("model.layers", 7, ("gate_proj", "up_proj"), "down_proj", False),  # SiLU
    "qwen2": ("model.layers", 7, ("gate_proj", "up_proj"), "down_proj", False),  # SiLU
    "gemma": ("model.layers", 7, ("gate_proj", "up_proj"), "down_proj", False),  # tanh GELU
}


def test_every_family_of_the_table_is_tested() -> None:
    """The ``family`` fixture (tests/conftest.py) runs each test below on every entry."""
    assert set(EXPECTED) == set(ARCHS) == set(FAMILIES)
    assert {"gpt_neox", "gpt2", "llama", "qwen2", "gemma"} <= set(FAMILIES)


def test_the_family_is_found_by_model_type_and_its_blocks_resolved(family) -> None:
    model = tiny_model(0, family=family, layers=6)
    assert arch_of(model).model_type == family == model.config.model_type
    assert arch_of(model.config) is arch_of(model)
    prefix, blocks = block_list(model)
    assert prefix == EXPECTED[family][0] and len(blocks) == 6
    name, module, idx = resolve_block(model, 0.67)
    assert (name, idx) == (f"{prefix}.4", 4)
    assert dict(model.named_modules())[name] is module is blocks[4]


def test_an_unsupported_family_is_one_line_naming_it() -> None:
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        vocab_size=50,
    )
    model = MistralForCausalLM(cfg)  # has model.layers, but is not in the table
    with pytest.raises(HarnessError) as err:
        resolve_block(model, 0.5)
    msg = str(err.value)
    assert "\n" not in msg
    assert "unsupported architecture MistralForCausalLM" in msg and "'mistral'" in msg
    assert "harness/model/arch.py" in msg
    with pytest.raises(HarnessError, match=r"unsupported architecture 'mistral'"):
        make_config("mistral", hidden_size=16)


def test_random_init_configs_take_the_generic_shape(family) -> None:
    cfg = make_config(
        family, hidden_size=48, num_hidden_layers=5, num_attention_heads=4, vocab_size=77
    )
    assert cfg.model_type == family
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (48, 5, 4)
    assert cfg.vocab_size == 77
    if hasattr(cfg, "head_dim"):
        assert cfg.head_dim == 12  # hidden / heads, not the family's default
    if hasattr(cfg, "num_key_value_heads"):
        assert cfg.num_key_value_heads == 4


def _block_output(model, block, ids, mask, pos) -> tuple[torch.Tensor, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}

    def grab(_m, _a, out):
        seen["h"] = (out[0] if isinstance(out, tuple) else out).detach()

    hook = block.register_forward_hook(grab)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
    finally:
        hook.remove()
    return seen["h"], logits.logits


def test_running_the_blocks_above_j_gives_the_full_forwards_logits(family) -> None:
    """The causal translator's fast path engages on every family, and is exact."""
    model = tiny_model(2, family=family, hidden=48, layers=4)
    _, blocks = block_list(model)
    ids, mask, pos = left_pad([[5, 6, 7, 8, 9, 10], [11, 12, 13]], pad_id=1)
    hidden, full = _block_output(model, blocks[1], ids, mask, pos)
    upper = blocks_above(model, blocks[1])
    assert upper is not None and list(upper) == list(blocks)[2:]
    with torch.no_grad(), only_blocks(model, upper):
        cut = model(inputs_embeds=hidden, attention_mask=mask, position_ids=pos, use_cache=False)
    real = mask.bool()
    assert torch.equal(cut.logits[real], full[real])
    assert len(block_list(model)[1]) == 4  # the full block list is back
    assert all(not m._forward_hooks for m in model.modules())


def test_gpt2s_position_embedding_is_silenced_while_the_upper_blocks_run() -> None:
    """Without it the cut forward would add the positions a second time."""
    model = tiny_model(2, family="gpt2", hidden=48, layers=4)
    blocks = model.transformer.h
    ids, mask, pos = left_pad([[5, 6, 7, 8]], pad_id=1)
    hidden, full = _block_output(model, blocks[0], ids, mask, pos)
    full_list = model.transformer.h
    model.transformer.h = blocks_above(model, blocks[0])
    try:
        with torch.no_grad():
            naive = model(inputs_embeds=hidden, position_ids=pos, use_cache=False).logits
    finally:
        model.transformer.h = full_list
    assert not torch.allclose(naive, full, atol=1e-3)


def test_mixed_attention_types_skip_the_upper_blocks_run() -> None:
    """Qwen2 with sliding-window attention on the upper layers looks each layer's mask up by
    position: a cut list would give layer j+1 layer 0's mask, so the fast path is skipped."""
    import transformers

    cfg = make_config(
        "qwen2",
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        vocab_size=100,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=2,
    )
    assert len(set(cfg.layer_types)) == 2
    model = transformers.Qwen2ForCausalLM(cfg).eval()
    assert blocks_above(model, model.model.layers[1]) is None
    plain = tiny_model(0, family="qwen2", layers=4)
    assert blocks_above(plain, plain.model.layers[1]) is not None
    assert blocks_above(plain, torch.nn.Linear(2, 2)) is None  # not one of its blocks


def test_causal_fitting_takes_the_fast_path_on_every_family(family) -> None:
    from harness.model.causal import CausalConfig, CausalExample, fit_causal_translator
    from harness.model.injection import InjectionSpec
    from harness.model.translator import fit_translator

    sender = tiny_model(1, family=family, hidden=32, layers=3)
    receiver = tiny_model(2, family=family, hidden=48, layers=4)
    s_block, r_block = block_list(sender)[1][1], block_list(receiver)[1][2]
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 99, (n,), generator=gen).tolist() for n in [7, 9, 8] * 4]
    xs = capture(sender, s_block, prompts, site="s", pad_id=1, batch_size=4)
    ys = capture(receiver, r_block, prompts, site="r", pad_id=1, batch_size=4)
    x, y = xs.concat(), ys.concat()
    linear = fit_translator(x, y, method="ridge", seed=0, val_frac=0.2)
    examples = [CausalExample(tuple(p), s, (5, 7)) for p, s in zip(prompts, xs.states, strict=True)]
    cfg = CausalConfig(
        lr=1e-2,
        weight_decay=0.0,
        steps=3,
        batch_size=4,
        warmup_frac=0.1,
        val_frac=0.25,
        eval_every=3,
        alignment_weight=0.0,
        rank=0,
    )
    kw: dict[str, Any] = {
        "init": linear,
        "spec": InjectionSpec("replace"),
        "cfg": cfg,
        "seed": 0,
        "pad_id": 1,
        "token_x": x,
        "token_y": y,
        "token_val_frac": 0.2,
        "mode": "replace",
    }
    fast = fit_causal_translator(receiver, r_block, examples, fast=True, **kw)
    slow = fit_causal_translator(receiver, r_block, examples, fast=False, **kw)
    assert fast.metrics["fast_path"] is True and slow.metrics["fast_path"] is False
    torch.testing.assert_close(fast.weight, slow.weight, atol=1e-4, rtol=1e-4)


def test_packing_engages_or_is_skipped_as_the_table_says(family, monkeypatch) -> None:
    """Which linears pack, which MLP keeps its intermediate compact on real rows and where
    GELU fuses, per family; real-rows-only prefill stays bitwise the padded prefill."""
    monkeypatch.setattr(packing, "PACK_MIN_WIDTH", 16)  # the tiny models are 64 wide
    if not packing._pointwise_linear_available():
        pytest.skip("this torch has no oneDNN pointwise linear")
    _, per_block, inputs, output, fused = EXPECTED[family]
    model = tiny_model(5, family=family, hidden=64, layers=2)
    _, blocks = block_list(model)
    assert len(mlp_modules(model)) == (2 if output else 0)
    with packed_linears(model) as n:
        assert n == 2 * per_block + 1  # the block linears and the LM head
        mlp: Any = blocks[0].mlp
        for name, child in mlp.named_children():
            if isinstance(child, PackedLinear):
                assert child.compact_out == (name in inputs), name
                assert child.compact_in == (name == output), name
        if output:
            first = getattr(mlp, inputs[0])
            assert (first.post == "gelu") == fused
    assert not any(isinstance(m, PackedLinear) for m in model.modules())  # restored

    gen = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 99, (n,), generator=gen).tolist() for n in (6, 2, 9)]
    monkeypatch.setenv("HARNESS_PACK_LINEAR", "0")
    plain = capture(model, blocks[1], prompts, site="s", pad_id=1)
    monkeypatch.setenv("HARNESS_PACK_LINEAR", "1")
    rows = capture(model, blocks[1], prompts, site="s", pad_id=1)
    with monkeypatch.context() as mp:
        mp.setattr("harness.model.activations.real_rows_only", lambda mask: nullcontext())
        padded = capture(model, blocks[1], prompts, site="s", pad_id=1)
    for a, b, c in zip(rows.states, padded.states, plain.states, strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, c, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("gated", ["llama", "qwen2", "gemma"])
def test_a_gated_mlps_intermediate_stays_compact_on_real_rows(gated, monkeypatch) -> None:
    monkeypatch.setattr(packing, "PACK_MIN_WIDTH", 16)
    if not packing._pointwise_linear_available():
        pytest.skip("this torch has no oneDNN pointwise linear")
    model = tiny_model(5, family=gated, hidden=64, layers=2)
    ids, mask, pos = left_pad([[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]], pad_id=1)
    shapes: list[tuple[int, ...]] = []
    act = model.model.layers[0].mlp.act_fn
    with packed_linears(model), torch.inference_mode(), real_rows_only(mask):
        hook = act.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape)))
        try:
            model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        finally:
            hook.remove()
    assert shapes == [(10, 4 * 64)]  # 10 real rows of 15, not [3, 5, 256]


def test_the_generation_fast_paths_engage_on_every_family(family) -> None:
    """The in-place KV cache and the last-position-only LM head are family-generic (they
    read the config and the forward's signature); this says so per family."""
    from harness.model.generate import _growing_cache, _last_logits_only

    model = tiny_model(0, family=family)
    cache = _growing_cache(model, 4)
    assert cache is not None and len(cache.layers) == model.config.num_hidden_layers
    assert _last_logits_only(model) == {"logits_to_keep": 1}


@pytest.fixture(scope="module")
def family_run(family, tmp_path_factory) -> tuple[str, Path, Path]:
    """The tiny grid (every primary and strict condition, one seed) plus one causal condition
    on a tiny saved random pair of the family, through the real runner."""
    root = tmp_path_factory.mktemp(f"arch-{family}")
    proto = build_tiny_experiment(root / "exp", seeds=(42,), family=family)
    out = root / "out"
    run_protocol(str(proto), out, progress=False)
    run_protocol(str(proto), out, conditions=["causal_replace"], progress=False)
    return family, proto, out


def test_a_tiny_grid_runs_end_to_end_and_validates_on_each_family(family_run) -> None:
    family, proto, out = family_run
    report = validate([out], load_protocol(proto))
    assert report.blocking_passed, [c.name for c in report.failures()]
    rs = ResultSet.from_dirs(out)
    prefix = EXPECTED[family][0]
    injected = [f for f in rs if f.condition not in ("no_inject", "nl_relay")]
    assert injected and len(rs) == 3 + 6 + 1 + 1  # deterministic, seeded, strict, causal
    for f in injected:
        models = f.raw["models"]
        # 0.67 of the sender's 3 blocks is block 2, of the receiver's 6 block 4 (no layer_a
        # where nothing is read from a model: random directions, zeros)
        want_a = {"sender": f"{prefix}.2", "receiver": f"{prefix}.4"}.get(models["model_a"])
        assert models["layer_a"] == want_a, f.condition
        assert models["layer_b"] == f"{prefix}.4", f.condition
        assert f.n == (2 if "strict" in f.condition else len(EVAL_ROWS))


def test_self_injection_is_token_identical_on_each_family(family_run) -> None:
    _, _, out = family_run
    rs = {f.condition: f for f in ResultSet.from_dirs(out)}
    base = [r["prediction"] for r in rs["no_inject"].per_sample]
    assert [r["prediction"] for r in rs["b_to_b_self_inject"].per_sample] == base
    assert any(p for p in base)  # the tiny models do generate something


def test_the_runners_causal_fit_took_the_fast_path_on_each_family(family_run) -> None:
    _, _, out = family_run
    rs = {f.condition: f for f in ResultSet.from_dirs(out)}
    assert rs["causal_replace"].raw["translator"]["fast_path"] is True


def test_a_family_model_without_its_block_list_is_named() -> None:
    from transformers import GPTNeoXModel

    from tests.model_fixtures import tiny_config

    base = GPTNeoXModel(tiny_config())  # the family's base model, no LM head
    with pytest.raises(HarnessError, match=r"GPTNeoXModel \(model_type 'gpt_neox'\) has no "):
        resolve_block(base, 0.5)
