"""Ramesh & Li's map W: sender final-token states -> the receiver's raw final-token states.

"Communicating Activations Between Language Model Agents" (Ramesh & Li, ICML 2025, arXiv
2501.14082), Section 3: where the two models' spaces differ, A's activation passes through a
task-agnostic linear map W (``d_B x d_A``, no bias) fitted once per pair by MSE between ``W a``
and ``b``, the final-token activations of A (layer k) and B (layer j) on the same texts. The
targets are raw, not normalised, so ``W a`` has the receiver's scale. A translator method
beside :mod:`harness.model.translator` (whose T fits unit-norm targets over every position);
it returns the same :class:`~harness.model.translator.Translator` type.
"""

from __future__ import annotations

from typing import Any

import torch

from harness.errors import HarnessError
from harness.model.translator import Translator, TranslatorConfig, split_tokens

__all__ = ["RAW_MAP_METHODS", "evaluate_raw_map", "fit_raw_map"]

_EPS = 1e-8


def _normalize(y: torch.Tensor) -> torch.Tensor:
    return y / y.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    sse = (pred - target).pow(2).sum()
    sst = (target - target.mean(dim=0, keepdim=True)).pow(2).sum().clamp_min(_EPS)
    return float(1.0 - sse / sst)


RAW_MAP_METHODS = ("lstsq", "adam", "identity")


def evaluate_raw_map(t: Translator, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Held-out metrics of a raw-target map (Ramesh & Li's W) on final-token pairs: raw R2 and
    cosine of ``W a`` against the raw ``b``, and its output norm against the native norm."""
    with torch.no_grad():
        pred, y = t(x).double(), y.double()
        p_norm, y_norm = pred.norm(dim=-1), y.norm(dim=-1)
        cos = (_normalize(pred) * _normalize(y)).sum(-1)
        return {
            "raw_r2": _r2(pred, y),
            "raw_cosine": float(cos.mean()),
            "pred_norm_mean": float(p_norm.mean()),
            "target_norm_mean": float(y_norm.mean()),
            "norm_ratio": float(p_norm.mean() / y_norm.mean().clamp_min(_EPS)),
            "n_val_texts": int(x.shape[0]),
        }


def _lstsq(x: torch.Tensor, y: torch.Tensor, ridge: float, intercept: bool) -> torch.Tensor:
    """``argmin_W ||x W^T - y||^2 + ridge * n * ||W||^2`` in float64 (``[dr, ds(+1)]``)."""
    x, y = x.double(), y.double()
    if intercept:
        x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    if ridge > 0:
        gram = x.T @ x + ridge * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)
        return torch.linalg.solve(gram, x.T @ y).T
    return torch.linalg.lstsq(x, y, driver="gelsd").solution.T


def _fit_adam(
    x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, batch_size: int, seed: int
) -> tuple[torch.Tensor, list[float]]:
    """Ramesh & Li's recipe: Adam on the plain MSE between ``W a`` and ``b``, no bias,
    ``epochs`` passes in seeded order from a zero map; the training loss per epoch."""
    gen = torch.Generator().manual_seed(seed)
    x, y = x.float(), y.float()
    w = torch.zeros(y.shape[1], x.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    history = []
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], batch_size):
            idx = order[start : start + batch_size]
            loss = (x[idx] @ w.T - y[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            history.append(float((x @ w.T - y).pow(2).mean()))
    return w.detach().double(), history


def fit_raw_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "lstsq",
    ridge: float = 0.0,
    intercept: bool = False,
    val_frac: float = 0.1,
    seed: int = 0,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 32,
) -> Translator:
    """Ramesh & Li's map W (Section 3): sender final-token states ``x`` ``[n, d_A]`` to the
    receiver's **raw** final-token states ``y`` ``[n, d_B]`` on the same texts, by MSE.

    ``lstsq``: the exact minimiser in float64 (``ridge`` > 0 adds ``ridge * n * ||W||^2``;
    ``intercept`` adds a bias, off by default as in their W); ``adam``: their optimiser
    (``epochs`` passes, ``lr``, ``batch_size``, no bias), reported with the least-squares fit's
    held-out raw R2 beside its own (``lstsq_raw_r2``), so non-convergence shows; ``identity``:
    no map (their same-model setting; widths must match). The last ``val_frac`` of the texts
    is held out for the metrics (:func:`evaluate_raw_map`). No normalisation anywhere, so
    ``W a`` has the receiver's scale."""
    if method not in RAW_MAP_METHODS:
        raise HarnessError(
            f"unknown raw-map method {method!r}", f"use one of {', '.join(RAW_MAP_METHODS)}"
        )
    if x.shape[0] != y.shape[0]:
        raise HarnessError(
            f"raw-map data mismatch: {x.shape[0]} sender vs {y.shape[0]} receiver texts",
            "capture both models on the same texts",
        )
    ds, dr = int(x.shape[1]), int(y.shape[1])
    if method == "identity" and ds != dr:
        raise HarnessError(
            f"an identity map needs equal widths, got sender {ds} and receiver {dr}",
            "use 'lstsq' for models of different widths",
        )
    x, y = x.float().cpu(), y.float().cpu()
    tr, va = split_tokens(x.shape[0], val_frac)
    info: dict[str, Any] = {}
    bias = torch.zeros(dr, dtype=torch.float64)
    if method == "identity":
        w = torch.eye(ds, dtype=torch.float64)
    elif method == "adam":
        with torch.enable_grad():
            w, info["train_loss_history"] = _fit_adam(
                x[tr], y[tr], epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
            )
    else:
        w = _lstsq(x[tr], y[tr], ridge, intercept)
        if intercept:
            w, bias = w[:, :-1], w[:, -1]
    recipe = {"method": method, "ridge": ridge, "intercept": intercept, "val_frac": val_frac}
    if method == "adam":
        recipe.update(epochs=epochs, lr=lr, batch_size=batch_size)
    cfg = TranslatorConfig(
        method=f"raw_{method}", seed=seed, sender_dim=ds, receiver_dim=dr, recipe=recipe
    )
    t = Translator(weight=w.float().contiguous(), bias=bias.float().contiguous(), config=cfg)
    t.metrics = {
        **evaluate_raw_map(t, x[va], y[va]),
        "n_train_texts": tr.stop - tr.start,
        **info,
    }
    if method == "adam":
        ref = Translator(_lstsq(x[tr], y[tr], 0.0, False).float(), torch.zeros(dr), cfg)
        t.metrics["lstsq_raw_r2"] = evaluate_raw_map(ref, x[va], y[va])["raw_r2"]
    return t
