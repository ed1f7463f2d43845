"""The linear translator: fits, held-out metrics, seeding, and the safetensors round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.model.translator import (
    Translator,
    evaluate_translator,
    fit_translator,
    load_translator,
    save_translator,
    split_tokens,
)


def _data(n: int = 600, ds: int = 12, dr: int = 16, noise: float = 0.01, seed: int = 0):
    """Receiver states that are a linear function of the sender's (plus a little noise)."""
    gen = torch.Generator().manual_seed(seed)
    x = 5 * torch.randn(n, ds, generator=gen) + 2
    w = torch.randn(dr, ds, generator=gen)
    y = x @ w.T + 30 + noise * torch.randn(n, dr, generator=gen)
    return x, y


def test_split_holds_out_the_last_tokens() -> None:
    tr, va = split_tokens(100, 0.1)
    assert (tr.start, tr.stop, va.start, va.stop) == (0, 90, 90, 100)
    assert split_tokens(3, 0.01)[1] == slice(2, 3)
    with pytest.raises(HarnessError):
        split_tokens(1, 0.1)


def test_ridge_fit_aligns_well_with_normalised_targets() -> None:
    x, y = _data()
    t = fit_translator(x, y, method="ridge", seed=0, ridge=1e-6, val_frac=0.2)
    m = t.metrics
    assert m["normalized_cosine"] > 0.99 and m["normalized_r2"] > 0.9
    assert m["raw_r2"] > 0.9 and m["raw_cosine"] == m["normalized_cosine"]
    assert m["n_train_tokens"] == 480 and m["n_val_tokens"] == 120
    assert m["pred_norm_mean"] == pytest.approx(1.0, abs=0.05)  # fits unit-norm targets
    assert m["norm_ratio"] > 10  # raw receiver states are far larger than the translation


def test_adamw_fit_is_seeded_and_keeps_the_best_checkpoint() -> None:
    x, y = _data(n=400)
    kw = {"method": "adamw", "lr": 1e-2, "epochs": 6, "batch_size": 32, "val_frac": 0.25}
    a = fit_translator(x, y, seed=42, **kw)
    b = fit_translator(x, y, seed=42, **kw)
    c = fit_translator(x, y, seed=123, **kw)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert not torch.equal(a.weight, c.weight)
    hist = a.metrics["val_loss_history"]
    assert len(hist) == 6 and a.metrics["best_epoch"] == min(range(6), key=hist.__getitem__)
    assert a.metrics["best_val_loss"] == pytest.approx(min(hist))
    assert a.metrics["normalized_cosine"] > 0.9


def test_adamw_does_not_touch_the_global_rng() -> None:
    x, y = _data(n=100)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    fit_translator(x, y, method="adamw", seed=1, epochs=1, batch_size=50)
    assert torch.equal(torch.rand(1), expected)


def test_perfect_translator_scores_one() -> None:
    _, y = _data(n=50, ds=16, dr=16)
    x = y / y.norm(dim=-1, keepdim=True)  # a sender that already holds the unit targets
    t = Translator(weight=torch.eye(16), bias=torch.zeros(16), config=None)  # type: ignore[arg-type]
    m = evaluate_translator(t, x, y)
    assert m["normalized_r2"] == pytest.approx(1.0, abs=1e-6)
    assert m["normalized_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert m["raw_r2"] == pytest.approx(1.0, abs=1e-6)
    assert m["pred_norm_mean"] == pytest.approx(1.0, abs=1e-6)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    x, y = _data(n=100)
    t = fit_translator(x, y, method="ridge", seed=7)
    path = save_translator(t, tmp_path / "fwd-seed7")
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    back = load_translator(tmp_path / "fwd-seed7")
    assert back.config == t.config and back.metrics == t.metrics
    assert torch.equal(back(x), t(x))
    with pytest.raises(HarnessError):
        load_translator(tmp_path / "missing")


def test_token_count_mismatch_and_unknown_method_are_errors() -> None:
    x, y = _data(n=20)
    with pytest.raises(HarnessError, match="mismatch"):
        fit_translator(x, y[:10], method="ridge", seed=0)
    with pytest.raises(HarnessError, match="unknown translator method"):
        fit_translator(x, y, method="sgd", seed=0)


def test_an_identity_translator_passes_states_unchanged_and_needs_equal_widths() -> None:
    import torch

    from harness.errors import HarnessError
    from harness.model.translator import fit_translator

    x = torch.randn(200, 16)
    t = fit_translator(x, x.clone(), method="identity", seed=0)
    assert torch.equal(t(x[:5]), x[:5])
    assert t.metrics["normalized_cosine"] > 0.999
    with pytest.raises(HarnessError, match="identity translator needs equal widths"):
        fit_translator(x, torch.randn(200, 8), method="identity", seed=0)
