"""Ramesh & Li's map W (harness.model.raw_map): the exact least-squares minimiser on raw
final-token pairs, their Adam recipe beside it, and the one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.model.raw_map import fit_raw_map
from harness.model.translator import split_tokens


def _pairs(n: int = 300, ds: int = 12, dr: int = 20, seed: int = 0, scale: float = 50.0):
    """Sender states and raw receiver states of a large norm (a native-like scale)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, ds, generator=gen) * 3 + 1
    w = torch.randn(dr, ds, generator=gen)
    y = (x @ w.T + 0.5 * torch.randn(n, dr, generator=gen)) * scale / 3
    return x, y


def test_the_fitted_map_equals_numpy_lstsq_on_the_same_pairs() -> None:
    x, y = _pairs()
    t = fit_raw_map(x, y, val_frac=0.1)
    tr, _ = split_tokens(x.shape[0], 0.1)
    want, *_ = np.linalg.lstsq(x[tr].double().numpy(), y[tr].double().numpy(), rcond=None)
    np.testing.assert_allclose(t.weight.double().numpy(), want.T, rtol=1e-5, atol=1e-4)
    assert torch.count_nonzero(t.bias) == 0  # no intercept by default, as their W
    assert t.config.method == "raw_lstsq"
    assert tuple(t.weight.shape) == (y.shape[1], x.shape[1])


def test_the_map_has_the_receivers_scale_and_reports_held_out_raw_fit() -> None:
    x, y = _pairs(scale=200.0)
    m = fit_raw_map(x, y).metrics
    assert m["raw_r2"] > 0.95 and m["raw_cosine"] > 0.95
    assert m["target_norm_mean"] > 100  # the targets are raw, not unit-normalised
    assert 0.9 < m["norm_ratio"] < 1.1
    assert m["n_val_texts"] == 30 and m["n_train_texts"] == 270


def test_ridge_and_intercept_options_match_their_closed_forms() -> None:
    x, y = _pairs()
    tr, _ = split_tokens(x.shape[0], 0.1)
    xa = np.hstack([x[tr].double().numpy(), np.ones((tr.stop, 1))])
    want, *_ = np.linalg.lstsq(xa, y[tr].double().numpy(), rcond=None)
    t = fit_raw_map(x, y, intercept=True)
    np.testing.assert_allclose(t.weight.double().numpy(), want[:-1].T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(t.bias.double().numpy(), want[-1], rtol=1e-4, atol=1e-3)
    lam = 0.5
    xt, yt = x[tr].double().numpy(), y[tr].double().numpy()
    ridge = np.linalg.solve(xt.T @ xt + lam * tr.stop * np.eye(xt.shape[1]), xt.T @ yt)
    np.testing.assert_allclose(
        fit_raw_map(x, y, ridge=lam).weight.double().numpy(), ridge.T, rtol=1e-5, atol=1e-4
    )


def test_their_adam_recipe_reports_its_own_and_the_least_squares_held_out_r2() -> None:
    x, y = _pairs()
    t = fit_raw_map(x, y, method="adam", epochs=30, lr=0.3, seed=1)
    m = t.metrics
    exact = fit_raw_map(x, y).metrics["raw_r2"]
    assert m["lstsq_raw_r2"] == pytest.approx(exact, abs=1e-6)
    assert m["raw_r2"] == pytest.approx(exact, abs=0.01)  # converged on this well-posed problem
    short = fit_raw_map(x, y, method="adam", epochs=3, lr=0.3, seed=1).metrics
    assert short["raw_r2"] < m["raw_r2"] - 0.05  # and the record shows when it has not
    assert len(m["train_loss_history"]) == 30
    again = fit_raw_map(x, y, method="adam", epochs=30, lr=0.3, seed=1)
    assert torch.equal(t.weight, again.weight)  # seeded


def test_the_identity_map_passes_states_unchanged() -> None:
    x, _ = _pairs(dr=12)
    t = fit_raw_map(x, x * 1.0, method="identity")
    assert torch.equal(t(x), x)
    assert t.metrics["raw_r2"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "shapes", "words"),
    [
        ({"method": "sgd"}, ((10, 3), (10, 4)), "unknown raw-map method"),
        ({}, ((10, 3), (9, 4)), "10 sender vs 9 receiver"),
        ({"method": "identity"}, ((10, 3), (10, 4)), "equal widths"),
    ],
    ids=["unknown method", "unequal counts", "identity across widths"],
)
def test_bad_raw_map_input_is_one_line_error(kwargs, shapes, words) -> None:
    with pytest.raises(HarnessError, match=words) as exc:
        fit_raw_map(torch.zeros(shapes[0]), torch.zeros(shapes[1]), **kwargs)
    assert "\n" not in str(exc.value.what)
