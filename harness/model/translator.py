"""The linear translator: sender states -> L2-normalised receiver states.

Two fits share one data split (the last ``val_frac`` of tokens, in prompt order, is held out):
the closed-form ridge solution and the paper's AdamW recipe (linear warmup then linear decay,
best held-out checkpoint kept). Inputs are standardised with training-split statistics and the
standardisation is folded back, so the saved translator is one plain affine map
``y = x @ weight.T + bias``. Every random draw takes an explicit seeded ``torch.Generator``.

Held-out metrics: normalised R2 and cosine against the unit-norm targets; raw R2 of the
prediction rescaled to the native norm (what scale-corrected injection inserts) and of the
prediction as is (what uncorrected replacement inserts) against the raw targets; norm stats.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.io import atomic_write_bytes, atomic_write_json
from harness.protocol import TranslatorSpec

__all__ = [
    "CorruptTranslatorError",
    "Translator",
    "TranslatorConfig",
    "check_finite_translator",
    "evaluate_translator",
    "fit_translator",
    "load_translator",
    "save_translator",
    "split_tokens",
]

_EPS = 1e-8
INIT_SCALE = 1e-2  # std of the AdamW init is INIT_SCALE / sqrt(sender_dim)


@dataclass(frozen=True)
class TranslatorConfig:
    """What a fitted translator is (saved next to its weights): its method and seed, the
    widths it maps, and the recipe that fitted it -- the protocol's ``[translator]``
    (:class:`~harness.protocol.TranslatorSpec`) or ``[causal]`` table, value for value."""

    method: str
    seed: int
    sender_dim: int
    receiver_dim: int
    recipe: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TranslatorConfig:
        """From its saved form (older files kept the recipe's values at the top level)."""
        rest = dict(raw)
        core = {k: rest.pop(k) for k in ("method", "seed", "sender_dim", "receiver_dim")}
        recipe = rest.pop("recipe", None)
        if recipe is None:  # the old flat form: the linear recipe's values, method included
            recipe = {"method": core["method"], **rest}
        return cls(**core, recipe=recipe)


@dataclass
class Translator:
    """An affine map ``sender_dim -> receiver_dim`` with its fit config and held-out metrics."""

    weight: torch.Tensor  # [receiver_dim, sender_dim]
    bias: torch.Tensor  # [receiver_dim]
    config: TranslatorConfig
    metrics: dict[str, Any] = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Translate ``[..., sender_dim]`` states (float32 result on ``x``'s device)."""
        w = self.weight.to(x.device)
        b = self.bias.to(x.device)
        return x.float() @ w.T + b


def _normalize(y: torch.Tensor) -> torch.Tensor:
    return y / y.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def split_tokens(n_tokens: int, val_frac: float) -> tuple[slice, slice]:
    """(train, val) slices: the last ``val_frac`` of tokens (at least one) is held out."""
    if n_tokens < 2:
        raise HarnessError(
            f"only {n_tokens} training token(s) for the translator",
            "use more translator training prompts",
        )
    n_val = min(max(1, round(n_tokens * val_frac)), n_tokens - 1)
    return slice(0, n_tokens - n_val), slice(n_tokens - n_val, n_tokens)


def _r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    sse = (pred - target).pow(2).sum()
    sst = (target - target.mean(dim=0, keepdim=True)).pow(2).sum().clamp_min(_EPS)
    return float(1.0 - sse / sst)


def evaluate_translator(
    translator: Translator, x: torch.Tensor, y: torch.Tensor
) -> dict[str, float]:
    """Held-out metrics of ``translator`` on sender ``x`` and raw receiver ``y`` tokens."""
    with torch.no_grad():
        pred = translator(x).double()
        y = y.double()
        yn = _normalize(y)
        y_norm = y.norm(dim=-1, keepdim=True)
        p_norm = pred.norm(dim=-1)
        cos = (_normalize(pred) * yn).sum(-1)
        rescaled = _normalize(pred) * y_norm
        return {
            "normalized_r2": _r2(pred, yn),
            "normalized_cosine": float(cos.mean()),
            "raw_r2": _r2(rescaled, y),
            "raw_cosine": float(cos.mean()),
            "raw_r2_unscaled": _r2(pred, y),
            "pred_norm_mean": float(p_norm.mean()),
            "target_norm_mean": float(y_norm.mean()),
            "norm_ratio": float(y_norm.mean() / p_norm.mean().clamp_min(_EPS)),
            "n_tokens": int(x.shape[0]),
        }


def _standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False).clamp_min(1e-6)
    return mean, std


def _fold(
    w: torch.Tensor, b: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``(x - mean) / std`` into the affine map: ``W' = W / std``, ``b' = b - W' mean``."""
    w_eff = w / std
    return w_eff.float().contiguous(), (b - w_eff @ mean).float().contiguous()


def _fit_ridge(
    xs: torch.Tensor, yn: torch.Tensor, ridge: float
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, yn = xs.double(), yn.double()
    x_mean, y_mean = xs.mean(0), yn.mean(0)
    xc, yc = xs - x_mean, yn - y_mean
    gram = xc.T @ xc + ridge * xs.shape[0] * torch.eye(xs.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, xc.T @ yc).T  # [dr, ds]
    return w, y_mean - w @ x_mean


def _fit_adamw(
    xs: torch.Tensor,
    yn: torch.Tensor,
    xv: torch.Tensor,
    yv: torch.Tensor,
    cfg: TranslatorSpec,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    ds, dr = xs.shape[1], yn.shape[1]
    # Small seeded init (outputs start near zero, far below the unit-norm targets): with the
    # recipe's lr of 1e-4 a default-scale init would spend the whole budget shrinking.
    w = (torch.randn(dr, ds, generator=gen) * (INIT_SCALE / ds**0.5)).requires_grad_(True)
    b = yn.mean(0).clone().requires_grad_(True)
    opt = torch.optim.AdamW([w, b], lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = xs.shape[0]
    steps_per_epoch = max(1, -(-n // cfg.batch_size))
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, round(total * cfg.warmup_frac))

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    best = (float("inf"), w.detach().clone(), b.detach().clone(), -1)
    history: list[float] = []
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            loss = (xs[idx] @ w.T + b - yn[idx]).pow(2).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            val = float((xv @ w.T + b - yv).pow(2).sum(-1).mean())
        history.append(val)
        if val < best[0]:
            best = (val, w.detach().clone(), b.detach().clone(), epoch)
    info = {"best_epoch": best[3], "best_val_loss": best[0], "val_loss_history": history}
    return best[1].double(), best[2].double(), info


def fit_translator(
    x: torch.Tensor,
    y: torch.Tensor,
    spec: TranslatorSpec | None = None,
    *,
    seed: int,
    **overrides: Any,
) -> Translator:
    """Fit sender tokens ``x`` ``[n, ds]`` to L2-normalised receiver tokens ``y`` ``[n, dr]``.

    ``spec``: the recipe (the protocol's ``[translator]`` table; default the paper's), with
    any of its fields overridden by keyword (``fit_translator(x, y, seed=0, method="ridge")``).
    Its ``method``: ``adamw`` (the paper's recipe), ``ridge`` (closed form) or ``identity``
    (no fit, for a pair whose sender is the receiver: the positive control).

    Tokens are in prompt order; the last ``val_frac`` is held out for the best-checkpoint
    choice (AdamW) and for the reported metrics. ``seed`` drives every random draw.
    """
    try:
        spec = dataclasses.replace(spec or TranslatorSpec(), **overrides)
    except TypeError as exc:  # an unknown recipe field
        raise HarnessError(
            f"fit_translator: {exc}", "see harness.protocol.TranslatorSpec"
        ) from None
    method = spec.method
    if x.shape[0] != y.shape[0]:
        raise HarnessError(
            f"translator data mismatch: {x.shape[0]} sender vs {y.shape[0]} receiver tokens",
            "sender and receiver prompts must tokenise identically",
        )
    if method not in ("adamw", "ridge", "identity"):
        raise HarnessError(
            f"unknown translator method {method!r}", "use 'adamw', 'ridge' or 'identity'"
        )
    if method == "identity" and x.shape[1] != y.shape[1]:
        raise HarnessError(
            f"an identity translator needs equal widths, got sender {x.shape[1]} and "
            f"receiver {y.shape[1]}",
            "use 'identity' only for a pair whose sender is the receiver (a positive control)",
        )
    cfg = TranslatorConfig(
        method=method,
        seed=seed,
        sender_dim=int(x.shape[1]),
        receiver_dim=int(y.shape[1]),
        recipe=dataclasses.asdict(spec),
    )
    val_frac = spec.val_frac
    x, y = x.float().cpu(), y.float().cpu()
    tr, va = split_tokens(x.shape[0], val_frac)
    mean, std = _standardise(x[tr])
    xs, xv = (x[tr] - mean) / std, (x[va] - mean) / std
    yn, yv = _normalize(y[tr]), _normalize(y[va])
    info: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(seed)
    if method == "identity":  # no fit: the sender's states pass unchanged (raw scale)
        w_eff = torch.eye(x.shape[1], dtype=torch.float32)
        b_eff = torch.zeros(x.shape[1], dtype=torch.float32)
    else:
        with torch.enable_grad():
            if method == "ridge":
                w, b = _fit_ridge(xs, yn, spec.ridge)
            else:
                w, b, info = _fit_adamw(xs, yn, xv, yv, spec, gen)
        w_eff, b_eff = _fold(w, b, mean.double(), std.double())
    t = Translator(weight=w_eff, bias=b_eff, config=cfg)
    t.metrics = {
        **evaluate_translator(t, x[va], y[va]),
        "n_train_tokens": tr.stop - tr.start,
        "n_val_tokens": va.stop - va.start,
        **info,
    }
    return t


class CorruptTranslatorError(HarnessError):
    """A cached translator whose files are missing, unreadable or fail their checksum.

    The runner treats it as a cache miss and refits; anything else raises it as a plain
    :class:`HarnessError`.
    """


def save_translator(t: Translator, path: str | os.PathLike[str]) -> Path:
    """Write ``PATH.json`` (config, metrics, SHA-256 of the weights), then ``PATH.safetensors``.

    Both writes are atomic and the weights come last, so a crash in between leaves no
    ``.safetensors`` (a cache miss) rather than weights without their config.
    """
    from safetensors.torch import save

    check_finite_translator(t, str(path))
    base = Path(path).with_suffix("")
    blob = save({"weight": t.weight.contiguous(), "bias": t.bias.contiguous()})
    atomic_write_json(
        base.with_suffix(".json"),
        {
            "config": dataclasses.asdict(t.config),
            "metrics": t.metrics,
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
            "record_sha256": _record_digest(t.config, t.metrics),
        },
    )
    return atomic_write_bytes(base.with_suffix(".safetensors"), blob)


def _record_digest(config: TranslatorConfig, metrics: dict[str, Any]) -> str:
    """SHA-256 of a translator's config and held-out metrics (what result files copy), over
    their canonical JSON: an edited cosine or recipe beside the weights fails it."""
    canon = json.dumps(
        {"config": dataclasses.asdict(config), "metrics": metrics},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canon.encode()).hexdigest()


def check_finite_translator(t: Translator, where: str) -> None:
    """Refuse a translator whose weight or bias holds NaN or inf."""
    for name, x in (("weight", t.weight), ("bias", t.bias)):
        if not bool(torch.isfinite(x).all()):
            raise CorruptTranslatorError(
                f"translator {where}: {name} holds NaN or inf",
                "refit it (delete the cached file; the runner refits), or lower the "
                "learning rate / raise the ridge penalty in [translator]",
            )


def load_translator(
    path: str | os.PathLike[str],
    *,
    sender_dim: int | None = None,
    receiver_dim: int | None = None,
) -> Translator:
    """Load a translator written by :func:`save_translator`.

    Missing, truncated or checksum-failing files (the weights, or the config and metrics
    beside them: a record without its checksum fails too) raise
    :class:`CorruptTranslatorError`; with
    ``sender_dim``/``receiver_dim`` given, a checkpoint of other shapes raises
    :class:`HarnessError` naming both shapes.
    """
    from safetensors.torch import load

    base = Path(path).with_suffix("")
    st, meta = base.with_suffix(".safetensors"), base.with_suffix(".json")
    fix = f"delete {base}.* (the runner refits it) or the whole cache folder"
    if not st.is_file() or not meta.is_file():
        raise CorruptTranslatorError(f"translator files missing at {base}", fix)
    blob = st.read_bytes()
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        want = info.get("weights_sha256")
        if want is not None and hashlib.sha256(blob).hexdigest() != want:
            raise ValueError("weights do not match the SHA-256 recorded beside them")
        tensors = load(blob)
        t = Translator(
            weight=tensors["weight"],
            bias=tensors["bias"],
            config=TranslatorConfig.from_dict(info["config"]),
            metrics=info.get("metrics", {}),
        )
        if info.get("record_sha256") != _record_digest(t.config, t.metrics):
            raise ValueError("config or metrics do not match the SHA-256 recorded beside them")
    except Exception as exc:  # any failure to parse the pair of files is corruption
        raise CorruptTranslatorError(
            f"translator checkpoint {st} is corrupt ({type(exc).__name__}: {exc})", fix
        ) from None
    _check_shapes(t, st, sender_dim, receiver_dim)
    check_finite_translator(t, str(st))
    return t


def _check_shapes(
    t: Translator, where: Path, sender_dim: int | None, receiver_dim: int | None
) -> None:
    cfg = t.config
    stored = (tuple(t.weight.shape), tuple(t.bias.shape))
    if stored != ((cfg.receiver_dim, cfg.sender_dim), (cfg.receiver_dim,)):
        raise CorruptTranslatorError(
            f"translator checkpoint {where} holds weight {list(stored[0])} and bias "
            f"{list(stored[1])}, its config says {cfg.sender_dim} -> {cfg.receiver_dim}",
            f"delete {where} (the runner refits it)",
        )
    want = (sender_dim or cfg.sender_dim, receiver_dim or cfg.receiver_dim)
    if want != (cfg.sender_dim, cfg.receiver_dim):
        raise HarnessError(
            f"translator checkpoint {where} maps {cfg.sender_dim} -> {cfg.receiver_dim} "
            f"dims but the models need {want[0]} -> {want[1]}",
            "it was fitted for other models (the weights changed under the same protocol): "
            "delete the translator cache and the stale result files, or use a fresh --out",
        )
