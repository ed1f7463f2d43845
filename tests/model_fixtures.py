"""Tiny models and a character-level tokenizer for the model-half tests.

Everything is built locally (no hub): a ~100-token character tokenizer made with the
``tokenizers`` library and tiny models (hidden size 32 by default; GPT-NeoX unless a test
asks for another family of the architecture table) with seeded random weights.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

from harness.model.arch import ARCHS, make_config

__all__ = [
    "EVAL_ROWS",
    "FAMILIES",
    "build_char_tokenizer",
    "tiny_config",
    "tiny_model",
    "write_tiny_protocol",
]

EOS, PAD, UNK = "<|endoftext|>", "<|padding|>", "<unk>"
_CHARS = [*string.printable[:95], "\n"]  # digits, letters, punctuation, space, newline


def build_char_tokenizer(directory: Path, *, reverse: bool = False) -> Any:
    """A character tokenizer (eos 0, pad 1, unk 2, 99 tokens) saved to ``directory``.

    ``reverse`` numbers the characters the other way round (same text, different ids).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {EOS: 0, PAD: 1, UNK: 2}
    for ch in reversed(_CHARS) if reverse else _CHARS:
        vocab.setdefault(ch, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token=EOS, bos_token=EOS, pad_token=PAD, unk_token=UNK
    )
    tok.padding_side = "left"
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(directory)
    return tok


# The families the model-half tests run on: every entry of the architecture table.
FAMILIES = tuple(ARCHS)


def tiny_config(
    hidden: int = 32, layers: int = 3, heads: int = 4, vocab: int = 100, *, family: str = "gpt_neox"
) -> Any:
    """A tiny random-init config of ``family`` from the architecture table (GPT-NeoX: Pythia's
    structure, parallel residual and partial rotary); token ids fit the char tokenizer (eos 0;
    pad 1 where the family's embedding reserves a padding row). Llama, Qwen2 and Gemma use
    grouped-query attention (half as many key/value heads)."""
    extra: dict[str, Any] = {"bos_token_id": 0, "eos_token_id": 0}
    if family != "gpt_neox":
        extra["pad_token_id"] = 1
    if ARCHS[family].head_dim:
        extra["num_key_value_heads"] = max(1, heads // 2)
    return make_config(
        family,
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        **extra,
    )


def tiny_model(
    seed: int = 0, *, family: str = "gpt_neox", dtype: torch.dtype = torch.float32, **config: Any
) -> Any:
    """A tiny causal LM of ``family`` in eval mode with weights drawn under ``seed``.

    Weights are scaled up (std 0.2) so greedy decoding is decisive and varied.
    """
    import transformers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = tiny_config(family=family, **config)
        cfg.initializer_range = 0.2
        model = getattr(transformers, ARCHS[family].model_class)(cfg)
    return model.to(dtype).eval()


def greedy_settings(max_new_tokens: int = 8, *, pad_token_id: int = 1) -> Any:
    """The protocols' greedy decoding (repetition penalty 1.3, no repeated 3-grams), no eos."""
    from harness.model.generate import GenerationSettings

    return GenerationSettings(
        max_new_tokens=max_new_tokens,
        repetition_penalty=1.3,
        no_repeat_ngram_size=3,
        eos_token_id=None,
        pad_token_id=pad_token_id,
    )


EVAL_ROWS = [
    {"clean_eval_id": f"t{i:02d}", "context": c, "question": q, "answer": a}
    for i, (c, q, a) in enumerate(
        [
            ("Bob works in Tokyo. Tokyo is in Japan.", "Where does Bob work?", "Japan"),
            ("Ann lives in Paris. Paris is in France.", "Where does Ann live?", "France"),
            ("Cy is in Rome. Rome is in Italy.", "Where is Cy?", "Italy"),
            ("Dee is in Oslo. Oslo is in Norway.", "Where is Dee?", "Norway"),
            ("Eve moved to Lima. Lima is in Peru.", "Where did Eve go?", "Peru"),
            ("Fay is in Kyiv. Kyiv is in Ukraine.", "Where is Fay?", "Ukraine"),
            ("Gus works in Cairo. Cairo is in Egypt.", "Where does Gus work?", "Egypt"),
        ]
    )
]


def write_tiny_protocol(
    directory: Path,
    *,
    sender: str,
    receiver: str,
    tokenizer: str,
    eval_path: str,
    eval_sha: str,
    train_path: str,
    n: int,
    strict_n: int,
    max_new_tokens: int = 6,
    relay_max_new_tokens: int = 8,
    seeds: tuple[int, ...] = (42, 123),
    batch_size: int = 4,
    method: str = "adamw",
) -> Path:
    """Write a complete protocol TOML for the tiny pair and return its path."""
    text = f"""
name = "tiny"
description = "tiny random GPT-NeoX pair for unit tests"
[models]
sender = "{sender}"
receiver = "{receiver}"
revision = "main"
relative_depth = 0.67
tokenizer = "{tokenizer}"
[eval]
path = "{eval_path}"
sha256 = "{eval_sha}"
version = "tiny-v1"
n = {n}
strict_n = {strict_n}
translator_train_path = "{train_path}"
[prompt]
template = "Context: {{context}}\\nQ: {{question}}\\nA:"
relay_sender_template = "{{context}}\\n\\nKey facts:"
relay_receiver_template = "{{relay}}\\nQ: {{question}}\\nA:"
receiver_template = "Context: {{context}}\\nQ: {{question}}\\nA:"
max_length = 256
[decoding]
max_new_tokens = {max_new_tokens}
do_sample = false
repetition_penalty = 1.3
no_repeat_ngram_size = 3
relay_max_new_tokens = {relay_max_new_tokens}
[injection]
timing = "prefill_only"
additive_scale = 0.01
scale_corrected_alpha = 1.0
best_alpha = 0.30
[run]
seeds = {list(seeds)}
directions = ["fwd"]
conditions = ["no_inject", "nl_relay", "additive", "replace", "scale_corrected", "best_alpha", "b_to_b_self_inject", "same_norm_random", "shuffled_translation"]
strict_conditions = ["shuffled_translation_strict_matched"]
appendix_conditions = ["zero_replacement"]
extension_conditions = []
batch_size = {batch_size}
[translator]
method = "{method}"
lr = 1e-2
weight_decay = 0.01
epochs = 3
batch_size = 64
warmup_frac = 0.1
val_frac = 0.2
ridge = 1e-3
max_train_prompts = 16
texts = ""
[causal]
lr = 1e-2
weight_decay = 0.0
steps = 6
batch_size = 4
warmup_frac = 0.1
val_frac = 0.25
eval_every = 3
alignment_weight = 0.0
rank = 0
[stats]
bootstrap_resamples = 100
confidence = 0.95
tost_low = -0.02
tost_high = 0.02
[audit]
per_file = 5
conditions = ["no_inject"]
"""
    path = directory / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


def build_tiny_experiment(
    directory: Path, *, seeds: tuple[int, ...], batch_size: int = 4, family: str = "gpt_neox"
) -> Path:
    """Tokenizer, a tiny sender (3 x 32) and receiver (6 x 48) of ``family`` (saved random
    weights), eval and train JSONL, and a protocol over them in ``directory``; returns the
    protocol path."""
    import json

    from harness.io import sha256_file

    build_char_tokenizer(directory / "tok")
    tiny_model(1, family=family, hidden=32, layers=3).save_pretrained(directory / "sender")
    tiny_model(2, family=family, hidden=48, layers=6).save_pretrained(directory / "receiver")
    (directory / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EVAL_ROWS))
    train = [{k: v for k, v in r.items() if k != "clean_eval_id"} for r in EVAL_ROWS * 2]
    (directory / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    return write_tiny_protocol(
        directory,
        sender="sender",
        receiver="receiver",
        tokenizer="tok",
        eval_path="eval.jsonl",
        eval_sha=sha256_file(directory / "eval.jsonl"),
        train_path="train.jsonl",
        n=len(EVAL_ROWS),
        strict_n=2,
        seeds=seeds,
        batch_size=batch_size,
    )
