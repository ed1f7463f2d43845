"""Tiny models and a character-level tokenizer for the model-half tests.

Everything is built locally (no hub): a ~100-token character tokenizer made with the
``tokenizers`` library and tiny models (hidden size 32 by default; GPT-NeoX unless a test
asks for another family of the architecture table) with seeded random weights.
"""

from __future__ import annotations

import json
import string
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.model.arch import ARCHS, make_config
from harness.protocol import PROTOCOL_DIR

__all__ = [
    "EVAL_ROWS",
    "FAMILIES",
    "MINI_TOML",
    "build_char_tokenizer",
    "build_tiny_experiment",
    "edit_protocol",
    "greedy_settings",
    "make_protocol",
    "merge_tables",
    "tiny_config",
    "tiny_model",
    "tiny_overrides",
    "toml_text",
    "write_protocol",
    "write_tiny_depth_sweep",
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


MINI_TOML = PROTOCOL_DIR / "mini.toml"


def merge_tables(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged onto it (a new dict): a table merges into the table of
    the same key, any other value replaces the base's."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_tables(out[key], value)
        else:
            out[key] = value
    return out


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form; "inf" and "nan" are TOML too
    if isinstance(value, str):
        # a JSON string is a TOML basic string, but for DEL, which TOML wants escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, f"{where}[]") for v in value) + "]"
    raise TypeError(f"{where}: no TOML form for {type(value).__name__}")


def toml_text(data: Mapping[str, Any]) -> str:
    """``data`` as TOML: str, int, float, bool and list values, and tables of them (nested
    tables as ``[a.b]``); :func:`tomllib.loads` of the text gives ``data`` back."""

    def table(t: Mapping[str, Any], prefix: str) -> list[str]:
        lines = [
            f"{k} = {_toml_value(v, prefix + k)}"
            for k, v in t.items()
            if not isinstance(v, Mapping)
        ]
        for k, v in t.items():
            if isinstance(v, Mapping):
                lines += ["", f"[{prefix}{k}]", *table(v, f"{prefix}{k}.")]
        return lines

    return "\n".join(table(data, "")).lstrip("\n") + "\n"


def _absolute_paths(table: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """``table`` with every string that names a file or folder relative to ``base`` made
    absolute, so it names the same one from a protocol written anywhere else."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            value = _absolute_paths(value, base)
        elif (
            isinstance(value, str)
            and value
            and not value.startswith("artifact:")
            and not Path(value).is_absolute()
            and (base / value).exists()
        ):
            value = str((base / value).resolve())
        out[key] = value
    return out


def write_protocol(path: Path, overrides: Mapping[str, Any], *, base: Path = MINI_TOML) -> Path:
    """Write ``base`` (a protocol TOML, ``protocols/mini.toml`` by default) with ``overrides``
    (a nested dict: ``{"run": {"seeds": [42]}}``) merged onto it to ``path``; returns ``path``.

    Paths ``base`` gives that ``overrides`` do not are made absolute, so they still name the
    same files; an overridden path is written as given (relative to ``path``'s folder)."""
    data = _absolute_paths(tomllib.loads(base.read_text(encoding="utf-8")), base.parent)
    path.write_text(toml_text(merge_tables(data, overrides)), encoding="utf-8")
    return path


def edit_protocol(path: Path, overrides: Mapping[str, Any]) -> Path:
    """Rewrite the protocol TOML at ``path`` with ``overrides`` merged onto it."""
    return write_protocol(path, overrides, base=path)


def tiny_overrides(
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
) -> dict[str, Any]:
    """What the tiny protocol changes of ``protocols/mini.toml``: the pair and its data, short
    generations, few seeds, a quick translator and causal recipe, a small bootstrap, no
    extension conditions. Everything else (prompts, decoding, injection, conditions) is the
    mini protocol's, which is the paper's."""
    return {
        "name": "tiny",
        "description": "tiny random GPT-NeoX pair for unit tests",
        "models": {"sender": sender, "receiver": receiver, "tokenizer": tokenizer},
        "eval": {
            "path": eval_path,
            "sha256": eval_sha,
            "version": "tiny-v1",
            "n": n,
            "strict_n": strict_n,
            "translator_train_path": train_path,
        },
        "decoding": {
            "max_new_tokens": max_new_tokens,
            "relay_max_new_tokens": relay_max_new_tokens,
        },
        "run": {"seeds": list(seeds), "extension_conditions": [], "batch_size": batch_size},
        "translator": {
            "method": method,
            "lr": 1e-2,
            "epochs": 3,
            "batch_size": 64,
            "val_frac": 0.2,
            "max_train_prompts": 16,
            "texts": "",
        },
        "causal": {
            "lr": 1e-2,
            "steps": 6,
            "batch_size": 4,
            "val_frac": 0.25,
            "eval_every": 3,
        },
        "stats": {"bootstrap_resamples": 100},
        "audit": {"conditions": ["no_inject"]},
    }


def write_tiny_protocol(
    directory: Path, *, overrides: Mapping[str, Any] | None = None, **tiny: Any
) -> Path:
    """Write the tiny protocol (``protocols/mini.toml`` with :func:`tiny_overrides` of
    ``tiny``, then ``overrides``) to ``directory / "tiny.toml"`` and return its path."""
    merged = merge_tables(tiny_overrides(**tiny), overrides or {})
    return write_protocol(directory / "tiny.toml", merged)


def build_tiny_experiment(
    directory: Path,
    *,
    seeds: tuple[int, ...],
    batch_size: int = 4,
    family: str = "gpt_neox",
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Tokenizer, a tiny sender (3 x 32) and receiver (6 x 48) of ``family`` (saved random
    weights), eval and train JSONL, and a protocol over them in ``directory`` (the tiny
    protocol, then ``overrides``); returns the protocol path."""
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
        overrides=overrides,
    )


def make_protocol(
    pair: Path,
    where: Path,
    *,
    eval_text: str | bytes | None = None,
    eval_sha: str | None = None,
    sender: str = "sender",
    receiver: str = "receiver",
    tokenizer: str = "tok",
    edit: tuple[str, str] | None = None,
) -> Path:
    """A tiny protocol in ``where`` over the tiny pair in ``pair`` (the ``pair`` fixture of
    ``tests/conftest.py``; its own eval file if ``eval_text`` is given). ``edit`` replaces the
    first occurrence of one text in the written TOML by another (a malformed protocol)."""
    from harness.io import sha256_file

    where.mkdir(parents=True, exist_ok=True)
    eval_path = pair / "eval.jsonl"
    if eval_text is not None:
        eval_path = where / "eval.jsonl"
        data = eval_text.encode() if isinstance(eval_text, str) else eval_text
        eval_path.write_bytes(data)
    path = write_tiny_protocol(
        where,
        sender=str(pair / sender),
        receiver=str(pair / receiver),
        tokenizer=str(pair / tokenizer) if tokenizer else "",
        eval_path=str(eval_path),
        eval_sha=eval_sha or sha256_file(eval_path),
        train_path=str(pair / "train.jsonl"),
        n=len(EVAL_ROWS),
        strict_n=2,
        seeds=(42,),
    )
    if edit is not None:
        text = path.read_text(encoding="utf-8")
        assert edit[0] in text
        path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    return path


def write_tiny_depth_sweep(directory: Path, name: str, *, seeds: tuple[int, ...]) -> Path:
    """A two-point sweep (relative depth 0.5 and 0.67) over the tiny pair built in
    ``directory / "pair"`` (no strict or appendix conditions); returns the sweep's path."""
    proto = build_tiny_experiment(
        directory / "pair",
        seeds=seeds,
        overrides={"run": {"strict_conditions": [], "appendix_conditions": []}},
    )
    path = directory / "depth.toml"
    path.write_text(
        f'[sweep]\nname = "{name}"\ndescription = "tiny pair at two depths"\nbase = "{proto}"\n'
        '[[axis]]\nkey = "models.relative_depth"\nvalues = [0.5, 0.67]\n',
        encoding="utf-8",
    )
    return path
