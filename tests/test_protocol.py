from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.protocol import PROTOCOL_DIR, load_protocol


def test_paper_protocol_holds_the_papers_frozen_values() -> None:
    p = load_protocol("paper")
    assert (p.models.sender, p.models.receiver, p.models.relative_depth) == (
        "EleutherAI/pythia-160m",
        "EleutherAI/pythia-410m",
        0.67,
    )
    assert p.eval.sha256 == "504e077cf17433e22967c86e98d321532d4e803dbe24d96af14c7e8ecdd0dcbb"
    assert p.decoding.generation_config() == {
        "max_new_tokens": 64,
        "do_sample": False,
        "repetition_penalty": 1.3,
        "no_repeat_ngram_size": 3,
    }
    assert p.decoding.relay_max_new_tokens == 128 and p.prompt.max_length == 256
    assert p.run.seeds == (42, 123, 456)
    assert (
        p.injection.additive_scale,
        p.injection.scale_corrected_alpha,
        p.injection.best_alpha,
    ) == (0.01, 1.0, 0.3)


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = (PROTOCOL_DIR / "paper.toml").read_text()
    assert old in text
    out = tmp_path / "variant.toml"
    out.write_text(text.replace(old, new, 1))
    return out


def test_hash_is_stable_and_changes_with_any_value(tmp_path: Path) -> None:
    assert load_protocol("paper").hash == load_protocol(PROTOCOL_DIR / "paper.toml").hash
    changed = load_protocol(_variant(tmp_path, "best_alpha = 0.30", "best_alpha = 0.31"))
    assert changed.hash != load_protocol("paper").hash


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("best_alpha = 0.30", "best_alpah = 0.30", "unknown protocol key injection.best_alpah"),
        ("relative_depth = 0.67", "relative_depth = 1.5", "relative_depth = 1.5: must be (0, 1)"),
        (
            "sender_layer = -1 ",
            "sender_layer = -2 ",
            "models.sender_layer = -2: must be an integer >= -1",
        ),
        ("receiver_layer = -1 ", "receiver_layer = 5000 ", "models.receiver_layer = 5000: must be"),
        ("receiver_layer = -1 ", "receiver_layer = 1.5 ", "models.receiver_layer must be int"),
        ("seeds = [42, 123, 456]", "seeds = []", "run.seeds = []: must hold at least one seed"),
        ('method = "adamw"', 'method = "sgd"', "translator.method = 'sgd'"),
        ("max_length = 256", 'max_length = "256"', "prompt.max_length must be int"),
        (
            '"no_inject", "nl_relay", "additive"',
            '"no_inject", "nl_relay", "additiv"',
            "run.conditions has 'additiv': must be one of",
        ),
        ("batch_size = 32 ", "batch_size = 0 ", "run.batch_size = 0: must be an integer >= 1"),
        ("max_new_tokens = 64 ", "max_new_tokens = 0 ", "decoding.max_new_tokens = 0: must be"),
        ("max_length = 256", "max_length = -5", "prompt.max_length = -5: must be an integer >= 1"),
        ("repetition_penalty = 1.3", "repetition_penalty = 0.0", "repetition_penalty = 0.0"),
        ("epochs = 20", "epochs = 0", "translator.epochs = 0: must be an integer >= 1"),
        ("val_frac = 0.1               # the last 10% of tokens", "val_frac = 1.5 #", "1.5"),
        ("additive_scale = 0.01", "additive_scale = -0.01", "injection.additive_scale = -0.01"),
        ("best_alpha = 0.30", "best_alpha = 1.3", "injection.best_alpha = 1.3: must be [0, 1]"),
        ("best_alpha = 0.30", "best_alpha = nan", "injection.best_alpha = nan"),
        ("seeds = [42, 123, 456]", "seeds = [42, 42]", "run.seeds = [42, 42]: must be unique"),
        ("seeds = [42, 123, 456]", "seeds = [42, 99999999999]", "each must be in [0, 2^32)"),
        ('timing = "prefill_only"', 'timing = "every_token"', "injection.timing = 'every_token'"),
        ("do_sample = false", "do_sample = true", "decoding.do_sample = true: must be false"),
        ("{context}\\nQ: {question}\\nA:", "{context}\\nQ: {questoin}\\nA:", "exactly the place"),
        ("{context}\\nQ: {question}\\nA:", "{context}\\nQ: {question\\nA:", "prompt.template"),
        ("tost_low = -0.02", "tost_low = 0.05", "must satisfy tost_low < tost_high"),
        ("strict_n = 383", "strict_n = 400", "eval.strict_n = 400: must be <= eval.n = 396"),
        (
            'conditions = ["no_inject", "nl_relay", "additive", "replace", "scale_corrected", "best_alpha", "b_to_b_self_inject", "same_norm_random", "shuffled_translation"]\n',
            "",
            "missing protocol key run.conditions",
        ),
    ],
)
def test_bad_protocols_are_one_line_errors(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    with pytest.raises(HarnessError) as err:
        load_protocol(_variant(tmp_path, old, new))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_protocol_name_lists_the_known_ones() -> None:
    with pytest.raises(HarnessError, match=r"use one of: .*paper"):
        load_protocol("papr")


def test_audit_conditions_must_exist(tmp_path: Path) -> None:
    old = 'conditions = ["no_inject", "nl_relay", "additive", "replace", "scale_corrected", "best_alpha"]'
    new = 'conditions = ["no_inject", "relay"]'
    with pytest.raises(HarnessError, match=r"audit\.conditions has 'relay': must be one of"):
        load_protocol(_variant(tmp_path, old, new))


def test_a_non_utf8_protocol_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_bytes((PROTOCOL_DIR / "paper.toml").read_bytes().replace(b"Pythia", b"Pyth\xffa", 1))
    with pytest.raises(HarnessError, match="is not UTF-8 text"):
        load_protocol(path)


def test_the_receiver_may_read_the_prompt_or_the_question_alone(tmp_path: Path) -> None:
    old = 'receiver_template = "Context: {context}\\nQ: {question}\\nA:"'
    withheld = load_protocol(_variant(tmp_path, old, 'receiver_template = "Q: {question}\\nA:"'))
    assert "{context}" not in withheld.prompt.receiver_template
    with pytest.raises(HarnessError, match=r"prompt\.receiver_template .* \{question\} once"):
        load_protocol(_variant(tmp_path, old, 'receiver_template = "{relay}\\nA:"'))
    assert load_protocol("mini-withheld").translator.method == "adamw"
    assert load_protocol("mini-control").translator.method == "identity"
