"""The shipped mini pair loads through from_pretrained and fits the protocol's layer rule."""

from __future__ import annotations

import pytest

from harness.model.models import block_index, resolve_block
from harness.protocol import load_protocol

WHICH = ("sender", "receiver")


@pytest.fixture(scope="module")
def proto():
    return load_protocol("mini")


@pytest.fixture(scope="module")
def models(proto):
    from transformers import AutoModelForCausalLM

    for w in WHICH:
        if not (proto.resolve_path(getattr(proto.models, w)) / "config.json").is_file():
            pytest.skip(f"mini {w} weights not trained yet: python -m harness.mini.train")
    return {
        w: AutoModelForCausalLM.from_pretrained(proto.resolve_path(getattr(proto.models, w)))
        for w in WHICH
    }


@pytest.mark.parametrize("which", WHICH)
def test_model_is_a_pythia_style_gpt_neox(models, which):
    cfg = models[which].config
    assert type(models[which]).__name__ == "GPTNeoXForCausalLM"
    assert cfg.use_parallel_residual


@pytest.mark.parametrize("which", WHICH)
def test_relative_depth_falls_on_an_inner_block(models, proto, which):
    n = models[which].config.num_hidden_layers
    name, _, layer = resolve_block(models[which], proto.models.relative_depth)
    assert layer == block_index(proto.models.relative_depth, n)
    assert name == f"gpt_neox.layers.{layer}"
    assert 0 < layer < n - 1


@pytest.mark.parametrize("which", WHICH)
def test_shipped_config_is_the_architecture_tables_gpt_neox_at_the_mini_shape(models, which):
    """mini/train.py builds its models from the table: the shipped weights' config is that
    config, so the table's GPT-NeoX facts are the ones the mini pair was trained with."""
    from harness.mini.train import build_model

    shipped = models[which].config.to_dict()
    built = build_model(which, shipped["vocab_size"]).config.to_dict()
    volatile = {"transformers_version", "architectures", "dtype", "torch_dtype", "_name_or_path"}
    assert {k: v for k, v in built.items() if k not in volatile} == {
        k: v for k, v in shipped.items() if k not in volatile
    }


def test_receiver_is_bigger_than_sender_with_a_different_width(models):
    s, r = models["sender"], models["receiver"]
    assert s.config.hidden_size != r.config.hidden_size
    assert sum(p.numel() for p in s.parameters()) < sum(p.numel() for p in r.parameters())
    assert r.config.num_hidden_layers > s.config.num_hidden_layers


def test_shipped_weights_total_at_most_20_mb(models, proto):
    total = 0
    for w in WHICH:
        total += sum(
            f.stat().st_size for f in proto.resolve_path(getattr(proto.models, w)).iterdir()
        )
    assert total <= 20 * 1024 * 1024


def test_models_share_the_tokenizer_vocabulary(models, proto):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(proto.resolve_path(proto.models.tokenizer))
    for m in models.values():
        assert m.config.vocab_size == len(tok)
        assert m.config.eos_token_id == tok.eos_token_id
