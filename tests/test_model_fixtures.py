"""The test fixtures' protocol writer: ``protocols/mini.toml`` plus overrides, as TOML."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.protocol import PROTOCOL_DIR, load_protocol
from tests.model_fixtures import (
    MINI_TOML,
    edit_protocol,
    merge_tables,
    toml_text,
    write_protocol,
    write_tiny_protocol,
)

# The tiny protocol as tests/model_fixtures.py wrote it from a hand-kept TOML template before
# issue #26 (verbatim, but ``{seeds}`` for ``{list(seeds)}``): the protocol built from mini.toml plus overrides must give every
# value it gave.
_TEMPLATE_BEFORE = """
name = "tiny"
description = "tiny random GPT-NeoX pair for unit tests"
[models]
sender = "{sender}"
receiver = "{receiver}"
revision = "main"
relative_depth = 0.67
sender_layer = -1
receiver_layer = -1
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
seeds = {seeds}
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


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


_ARGS = {
    "sender": "sender",
    "receiver": "receiver",
    "tokenizer": "tok",
    "eval_path": "eval.jsonl",
    "eval_sha": "0123456789abcdef" * 4,
    "train_path": "train.jsonl",
    "n": 7,
    "strict_n": 2,
}


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_the_tiny_protocol_from_mini_plus_overrides_keeps_every_value_of_the_old_template(
    tmp_path: Path, where: str
) -> None:
    pair = tmp_path / "pair"
    for name in ("sender", "receiver", "tok"):
        (pair / name).mkdir(parents=True)
    for name in ("eval.jsonl", "train.jsonl"):
        (pair / name).write_text("")
    args: dict[str, Any] = dict(_ARGS, seeds=(42, 123, 456), method="ridge")
    args |= {"max_new_tokens": 5, "relay_max_new_tokens": 9, "batch_size": 3}
    if where == "absolute":
        for key in ("sender", "receiver", "tokenizer", "eval_path", "train_path"):
            args[key] = str(pair / args[key])
        new_dir = tmp_path / "elsewhere"
        new_dir.mkdir()
    else:
        new_dir = pair
    old = _TEMPLATE_BEFORE.format(**{**args, "seeds": list(args["seeds"])})
    before = _flat(tomllib.loads(old))
    after_path = write_tiny_protocol(new_dir, **args)
    after = _flat(load_protocol(after_path).to_dict())  # loads and passes every rule
    assert set(before) <= set(after)
    for key, value in before.items():
        got = after[key]
        if isinstance(value, str) and value and (pair / value).exists():  # a path
            assert (after_path.parent / got).resolve() == (pair / value).resolve(), key
        else:
            assert got == value and type(got) is type(value), (key, got, value)


def test_paths_inherited_from_mini_still_name_mini_s_files_from_another_folder(
    tmp_path: Path,
) -> None:
    mini = load_protocol("mini")
    path = write_protocol(tmp_path / "copy.toml", {"run": {"seeds": [7]}})
    copy = load_protocol(path)
    assert copy.run.seeds == (7,)
    old, new = _flat(mini.to_dict()), _flat(copy.to_dict())
    assert set(old) == set(new)
    paths = 0
    for key, value in old.items():
        if key == "run.seeds":
            continue
        if isinstance(value, str) and value and (PROTOCOL_DIR / value).exists():
            paths += 1
            assert Path(new[key]).is_absolute(), key
            assert Path(new[key]).resolve() == (PROTOCOL_DIR / value).resolve(), key
        else:
            assert new[key] == value, key
    # the pair, the tokenizer, the eval and training files and the texts for W
    assert paths == 6
    assert copy.eval_path() == mini.eval_path()
    assert copy.translator_train_path() == mini.translator_train_path()


def test_an_edit_merges_onto_the_written_protocol(tmp_path: Path) -> None:
    path = write_protocol(tmp_path / "p.toml", {"causal": {"lr": 0.5}})
    edit_protocol(path, {"causal": {"steps": 9}, "stats": {"tost_low": -0.5}})
    p = load_protocol(path)
    assert (p.causal.lr, p.causal.steps, p.stats.tost_low) == (0.5, 9, -0.5)
    assert p.causal.batch_size == load_protocol(MINI_TOML).causal.batch_size


def test_merging_replaces_values_and_merges_tables() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 2}
    merged = merge_tables(base, {"a": {"y": [3]}, "b": {"z": 1}, "c": "new"})
    assert merged == {"a": {"x": 1, "y": [3]}, "b": {"z": 1}, "c": "new"}
    assert base == {"a": {"x": 1, "y": [1, 2]}, "b": 2}  # not changed in place


@pytest.mark.parametrize(
    "value",
    [
        'quote " and backslash \\ and {braces}',
        "tab\there, newline\n, DEL \x7f, NUL \x00, e\u0301, \U0001f600",
        "",
        0,
        -7,
        2**62,
        0.1,
        1e-300,
        -0.0,
        math.inf,
        -math.inf,
        True,
        False,
        [],
        ["a", "b"],
        [1.5, 2.5],
    ],
    ids=lambda v: repr(v)[:20],
)
def test_every_value_a_protocol_holds_reads_back_from_the_toml(value: Any) -> None:
    data = {"top": value, "t": {"k": value, "n": {"deeper": value}}}
    back = tomllib.loads(toml_text(data))
    assert back == data
    assert type(back["t"]["n"]["deeper"]) is type(value)


def test_a_value_toml_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError, match=r"t\.k: no TOML form for NoneType"):
        toml_text({"t": {"k": None}})
