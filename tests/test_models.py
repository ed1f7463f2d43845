"""Model loading, layer resolution and activation capture (tiny local models, no hub)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.model.activations import capture, left_pad
from harness.model.arch import NAMED_CONFIGS, named_config
from harness.model.models import (
    block_index,
    load_model,
    load_tokenizer,
    resolve_block,
)
from tests.model_fixtures import build_char_tokenizer, tiny_model


@pytest.mark.parametrize(
    ("depth", "n_layers", "expected"),
    [(0.67, 12, 8), (0.67, 24, 16), (0.5, 12, 6), (0.7, 10, 7), (0.01, 12, 0), (0.99, 12, 11)],
    ids=["pythia160m-0.67", "pythia410m-0.67", "half", "float-error-absorbed", "low", "high"],
)
def test_block_index_is_floor_of_depth_times_layers(depth, n_layers, expected) -> None:
    assert block_index(depth, n_layers) == expected


@pytest.mark.parametrize("depth", [0.0, 1.0, -0.1, 1.5])
def test_block_index_rejects_depths_outside_the_open_unit_interval(depth) -> None:
    with pytest.raises(HarnessError):
        block_index(depth, 12)


def test_resolve_block_names_the_gpt_neox_block_at_relative_depth() -> None:
    model = tiny_model(0, layers=4)
    name, module, idx = resolve_block(model, 0.67)
    assert (name, idx) == ("gpt_neox.layers.2", 2)
    assert module is model.gpt_neox.layers[2]
    assert dict(model.named_modules())[name] is module


def test_resolve_block_supports_gpt2_and_llama_style_models() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=16, n_head=2, vocab_size=50))
    llama = LlamaForCausalLM(
        LlamaConfig(
            num_hidden_layers=6,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_key_value_heads=2,
            vocab_size=50,
        )
    )
    assert resolve_block(gpt2, 0.67)[0] == "transformer.h.2"
    assert resolve_block(llama, 0.67)[0] == "model.layers.4"


def test_resolve_block_rejects_an_unknown_architecture() -> None:
    with pytest.raises(HarnessError, match="unsupported architecture"):
        resolve_block(torch.nn.Linear(2, 2), 0.5)


def test_pythia_configs_state_the_paper_models_shapes() -> None:
    small, big = named_config("EleutherAI/pythia-160m"), named_config("EleutherAI/pythia-410m")
    assert (small.hidden_size, small.num_hidden_layers, small.num_attention_heads) == (768, 12, 12)
    assert (big.hidden_size, big.num_hidden_layers, big.num_attention_heads) == (1024, 24, 16)
    assert (small.intermediate_size, big.intermediate_size) == (3072, 4096)
    for cfg in (small, big):
        assert cfg.vocab_size == 50304 and cfg.max_position_embeddings == 2048
        assert cfg.use_parallel_residual and not cfg.tie_word_embeddings
        assert cfg.rope_parameters["partial_rotary_factor"] == 0.25
        assert cfg.rope_parameters["rope_theta"] == 10000
        assert (cfg.bos_token_id, cfg.eos_token_id, cfg.layer_norm_eps) == (0, 0, 1e-5)
    assert set(NAMED_CONFIGS) == {"EleutherAI/pythia-160m", "EleutherAI/pythia-410m"}
    assert type(small).__name__ == "GPTNeoXConfig" and small.hidden_act == "gelu"
    assert block_index(0.67, small.num_hidden_layers) == 8
    assert block_index(0.67, big.num_hidden_layers) == 16


def test_random_init_is_seeded_and_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    tiny_model(0).config.save_pretrained(tmp_path)
    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    a = load_model(str(tmp_path), init="random", seed=3)
    b = load_model(str(tmp_path), init="random", seed=3)
    c = load_model(str(tmp_path), init="random", seed=4)
    assert torch.equal(torch.rand(1), expected_next)
    wa, wb, wc = (m.gpt_neox.layers[0].mlp.dense_h_to_4h.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert not a.training


def test_missing_weights_fail_fast_with_how_to_provide_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HARNESS_ALLOW_DOWNLOAD", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(HarnessError) as err:
        load_model("EleutherAI/pythia-160m", init="pretrained")
    assert time.perf_counter() - t0 < 30
    msg = str(err.value)
    assert "\n" not in msg
    for needle in ("EleutherAI/pythia-160m", "HF_HOME", "local model directory", "hub"):
        assert needle in msg


def test_local_model_directory_and_tokenizer_load(tmp_path: Path) -> None:
    tiny_model(1).save_pretrained(tmp_path / "m")
    build_char_tokenizer(tmp_path / "tok")
    model = load_model(str(tmp_path / "m"))
    tok, source = load_tokenizer(str(tmp_path / "tok"))
    assert source == str((tmp_path / "tok").resolve())
    assert tok.pad_token_id == 1 and tok.eos_token_id == 0
    assert torch.equal(model.lm_head.weight, tiny_model(1).lm_head.weight)


def test_left_pad_counts_positions_from_each_prompts_first_real_token() -> None:
    ids, mask, pos = left_pad([[5, 6, 7], [9]], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [1, 1, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_captured_states_equal_output_hidden_states_at_index_plus_one() -> None:
    """hidden_states[i + 1] is the output of layers[i] (hidden_states[0] is the embedding);
    the last entry has the final layer norm applied, so it is not a block output."""
    model = tiny_model(0, layers=4)
    prompts = [[3, 4, 5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15]]
    ids, mask, pos = left_pad(prompts, pad_id=1)
    with torch.no_grad():
        hs = model(
            input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True
        ).hidden_states
    assert len(hs) == 5
    for layer in range(3):
        site = f"gpt_neox.layers.{layer}"
        acts = capture(
            model, model.gpt_neox.layers[layer], prompts, site=site, pad_id=1, batch_size=3
        )
        assert acts.site == site and acts.lengths == [6, 3, 4]
        for row, states in enumerate(acts.states):
            assert torch.equal(states, hs[layer + 1][row, -len(prompts[row]) :])
            assert not torch.equal(states, hs[layer][row, -len(prompts[row]) :])
    last = capture(model, model.gpt_neox.layers[3], prompts, site="x", pad_id=1, batch_size=3)
    assert not torch.allclose(last.states[0], hs[4][0])


def test_capture_in_batches_matches_capture_one_by_one() -> None:
    model = tiny_model(0, layers=3)
    prompts = [[3, 4, 5, 6, 7, 8], [9, 10, 11], [12, 13]]
    block = model.gpt_neox.layers[1]
    batched = capture(model, block, prompts, site="s", pad_id=1, batch_size=3)
    single = capture(model, block, prompts, site="s", pad_id=1, batch_size=1)
    for a, b in zip(batched.states, single.states, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert batched.concat().shape == (11, 32)
    assert not block._forward_hooks


def test_a_local_model_folder_without_config_or_with_truncated_weights_is_named(tmp_path):
    import shutil

    from harness.errors import HarnessError
    from harness.model.models import load_model
    from tests.helpers import ROOT

    src = ROOT / "harness" / "mini" / "models" / "sender"
    no_cfg = tmp_path / "no_cfg"
    shutil.copytree(src, no_cfg)
    (no_cfg / "config.json").unlink()
    with pytest.raises(HarnessError, match=r"has no config\.json") as err:
        load_model(str(no_cfg))
    assert "HARNESS_ALLOW_DOWNLOAD" not in str(err.value)
    truncated = tmp_path / "truncated"
    shutil.copytree(src, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(HarnessError, match=r"truncated|could not be loaded|unreadable"):
        load_model(str(truncated))
