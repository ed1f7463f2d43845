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
        ("relative_depth = 0.67", "relative_depth = 1.5", "relative_depth = 1.5 is out of range"),
        ("seeds = [42, 123, 456]", "seeds = []", "run.seeds is empty"),
        ('method = "adamw"', 'method = "sgd"', "translator.method = 'sgd'"),
        ("max_length = 256", 'max_length = "256"', "prompt.max_length must be int"),
        (
            '"no_inject", "nl_relay", "additive"',
            '"no_inject", "nl_relay", "additiv"',
            "unknown condition 'additiv'",
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
