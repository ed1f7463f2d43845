"""A translator trained for receiver-side causal use (beyond the paper, issue #9).

The paper fits its translator to *represent* the receiver's states (MSE to unit-norm targets)
and closes by conjecturing that useful transfer needs an objective that optimises the
receiver's *use* of the injected states. This module trains the same affine map through the
frozen receiver: the translated sender states are injected at the receiver block on the
translator-training prompts (disjoint from the eval) exactly as the ``replace`` or
``additive`` condition injects them at inference (or, for ``last_token_causal_replace``, as
``last_token_replace`` does: the sender's last state at the receiver's last prompt position,
the receiver reading its own prompt), and the loss is the receiver's
cross-entropy on the gold answer tokens (teacher forced), optionally plus a weighted
normalised-alignment term. Only the map's parameters get gradients; the receiver is frozen.

Parameterisation: ``y = s * (W_s @ standardise(x) + b_s)`` with ``s`` the receiver's mean
native state norm on the training tokens (a constant), initialised from the seed's linear
translator, so step 0 injects the linear map's direction at the native scale. ``rank > 0``
restricts ``W_s`` to rank ``r`` (``A @ B``, initialised from the truncated SVD). The result
is folded into an ordinary :class:`~harness.model.translator.Translator` (``y = W x + b``), saved
and loaded like the linear one. The held-out prompts (the last ``val_frac`` of the training
prompts) choose the best step; the reported offline metrics use the linear translator's
held-out *tokens*, so the two cosines compare like with like.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.model.activations import block_output, capture, left_pad, with_block_output
from harness.model.arch import blocks_above, only_blocks
from harness.model.injection import InjectionSpec, apply_injection, pad_sources
from harness.model.plans import sample_sources
from harness.model.translator import Translator, TranslatorConfig, evaluate_translator, split_tokens
from harness.protocol import CausalSpec

__all__ = ["CausalConfig", "CausalExample", "answer_losses", "fit_causal_translator"]

_EPS = 1e-8
log = logging.getLogger(__name__)


# The recipe is the protocol's ``[causal]`` table itself (one definition, no copy).
CausalConfig = CausalSpec


@dataclass(frozen=True)
class CausalExample:
    """One training prompt: receiver prompt ids, its sender states, the gold answer ids.

    ``sender_states``: the sender's block outputs over its own prompt: one per receiver
    prompt position for a sequence-level injection; for a last-token one (``positions =
    "last"``) the sender's prompt may differ (e.g. the receiver's withholds the context) and
    only its last state is used. ``native``: the receiver block's own output over prompt +
    answer (filled in by :func:`fit_causal_translator` when the fast path applies).
    """

    prompt_ids: tuple[int, ...]
    sender_states: torch.Tensor  # [sender prompt length, sender_dim]
    answer_ids: tuple[int, ...]
    native: torch.Tensor | None = None  # [len(prompt_ids) + len(answer_ids), receiver_dim]


def _upper_logits(
    receiver: nn.Module, upper: nn.ModuleList, hidden: torch.Tensor, mask, pos
) -> torch.Tensor:
    """Logits of ``receiver`` run from ``hidden`` (the injection block's output) upward.

    The lower blocks do not depend on the map, so their output is computed once per example
    and the training forward runs only the blocks above the injection site: the model's own
    forward with ``inputs_embeds`` = the block output and its block list cut to ``upper``
    (:func:`harness.model.arch.only_blocks`, the architecture table's "blocks above j").
    """
    with only_blocks(receiver, upper):
        return receiver(
            inputs_embeds=hidden, attention_mask=mask, position_ids=pos, use_cache=False
        ).logits


class _Map(nn.Module):
    """The trainable affine map in standardised coordinates (full or rank-``r``)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, rank: int) -> None:
        super().__init__()
        self.rank = rank
        if rank > 0:
            if rank > min(w.shape):
                raise HarnessError(
                    f"causal.rank = {rank} exceeds the map's size {tuple(w.shape)}",
                    f"use 0 (full rank) or a rank up to {min(w.shape)}",
                )
            u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
            root = s[:rank].sqrt()
            self.a = nn.Parameter((u[:, :rank] * root).float())
            self.b_ = nn.Parameter((root[:, None] * vh[:rank]).float())
        else:
            self.w = nn.Parameter(w.float().clone())
        self.bias = nn.Parameter(b.float().clone())

    def weight(self) -> torch.Tensor:
        return self.a @ self.b_ if self.rank > 0 else self.w

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        return xs @ self.weight().T + self.bias


def _inject(
    spec: InjectionSpec, hidden: torch.Tensor, source: torch.Tensor, prompt: torch.Tensor
) -> torch.Tensor:
    """``hidden`` with ``source`` injected (``spec``) at the ``prompt`` positions only."""
    new, _ = apply_injection(spec, hidden, source.to(hidden.dtype))
    return torch.where(prompt.unsqueeze(-1), new, hidden)


class _TrainingInjection:
    """A differentiable forward hook: inject ``source`` at the ``prompt`` positions."""

    def __init__(
        self, module: nn.Module, spec: InjectionSpec, source: torch.Tensor, prompt: torch.Tensor
    ) -> None:
        self.module = module
        self.spec = spec
        self.source = source
        self.prompt = prompt
        self.fired = 0

    def _hook(self, _mod: nn.Module, _args: Any, output: Any) -> Any:
        self.fired += 1
        hidden = block_output(output)
        return with_block_output(output, _inject(self.spec, hidden, self.source, self.prompt))

    def __enter__(self) -> _TrainingInjection:
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()
        if exc[0] is None and self.fired != 1:
            raise HarnessError(
                f"causal training hook fired {self.fired} times for one forward",
                "check the resolved receiver block",
            )


def _batch(
    examples: Sequence[CausalExample], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded prompt+answer ids, mask, positions, prompt mask and answer-label mask."""
    seqs = [list(e.prompt_ids) + list(e.answer_ids) for e in examples]
    ids, mask, pos = left_pad(seqs, pad_id)
    width = ids.shape[1]
    prompt = torch.zeros_like(mask, dtype=torch.bool)
    answer = torch.zeros_like(mask, dtype=torch.bool)  # positions whose *next* token is answer
    for i, e in enumerate(examples):
        start = width - len(seqs[i])
        p_end = start + len(e.prompt_ids)
        prompt[i, start:p_end] = True
        answer[i, p_end - 1 : width - 1] = True
    return ids, mask, pos, prompt, answer


def _sites(prompt: torch.Tensor, spec: InjectionSpec) -> torch.Tensor:
    """The positions ``spec`` changes: every prompt position, or each row's last one."""
    if spec.positions == "all":
        return prompt
    last = prompt.shape[1] - 1 - prompt.flip(1).int().argmax(1)
    sites = torch.zeros_like(prompt)
    sites[torch.arange(len(prompt), device=prompt.device), last] = True
    return sites


def _sources(
    examples: Sequence[CausalExample], translate: Any, prompt: torch.Tensor, spec: InjectionSpec
) -> torch.Tensor:
    """Each example's source vectors at its prompt positions (zeros elsewhere), built by the
    runner's own interpreter (:func:`harness.model.plans.sample_sources`) from the translated
    sender states, so training sees exactly what inference injects."""
    outs = [sample_sources(spec, translate(e.sender_states), len(e.prompt_ids)) for e in examples]
    flat = torch.cat(outs, dim=0)
    src = flat.new_zeros((*prompt.shape, flat.shape[-1]))
    return src.masked_scatter(prompt.unsqueeze(-1), flat)


def answer_losses(
    receiver: nn.Module,
    examples: Sequence[CausalExample],
    *,
    pad_id: int,
    module: nn.Module | None = None,
    spec: InjectionSpec | None = None,
    translate: Any = None,
    upper: nn.ModuleList | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example mean answer-token NLL and first-answer-token hit (teacher forced).

    With ``module``/``spec``/``translate`` the translated sender states are injected at the
    prompt positions of ``module``'s output (the runner's prefill injection, differentiably);
    without them the receiver runs clean (the no-injection reference). With ``upper`` (the
    blocks above ``module``) and every example's ``native`` block output, only those blocks
    run (the same logits, without recomputing the blocks below).
    """
    if any(not e.answer_ids for e in examples):
        raise HarnessError("a causal training example has an empty answer", "check the split")
    ids, mask, pos, prompt, answer = _batch(examples, pad_id)
    device = next(receiver.parameters()).device
    ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
    prompt, answer = prompt.to(device), answer.to(device)
    if translate is None:
        hook: Any = nullcontext()
    else:
        assert spec is not None
        sites = _sites(prompt, spec)
        src = _sources(examples, translate, prompt, spec).to(device)
        if upper is not None:
            assert all(e.native is not None for e in examples)
            native = pad_sources([e.native for e in examples], ids.shape[1], device)  # type: ignore[misc]
            hidden = _inject(spec, native, src, sites)
            return _nll_and_hit(_upper_logits(receiver, upper, hidden, mask, pos), ids, answer)
        assert module is not None
        hook = _TrainingInjection(module, spec, src, sites)
    with hook:
        logits = receiver(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False
        ).logits
    return _nll_and_hit(logits, ids, answer)


def _nll_and_hit(
    logits: torch.Tensor, ids: torch.Tensor, answer: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels, a = logits[:, :-1].float(), ids[:, 1:], answer[:, :-1]
    nll = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    per_ex = (nll * a).sum(1) / a.sum(1).clamp_min(1)
    first = a.float().argmax(1)
    rows = torch.arange(len(logits), device=logits.device)
    hit = (logits[rows, first].argmax(-1) == labels[rows, first]).float()
    return per_ex, hit


def _fast_path(
    receiver: nn.Module,
    module: nn.Module,
    train: list[CausalExample],
    val: list[CausalExample],
    pad_id: int,
    spec: InjectionSpec,
    translate: Any,
) -> tuple[list[CausalExample], list[CausalExample], nn.ModuleList | None]:
    """Cache every example's native block output and return the blocks above the site,
    once a check batch shows the cut forward gives the full hooked forward's logits."""
    upper = blocks_above(receiver, module)
    if upper is None:
        return train, val, None
    seqs = [list(e.prompt_ids) + list(e.answer_ids) for e in train + val]
    acts = capture(receiver, module, seqs, site="causal", pad_id=pad_id, batch_size=32)
    filled = [
        dataclasses.replace(e, native=s.clone())
        for e, s in zip(train + val, acts.states, strict=True)
    ]
    train, val = filled[: len(train)], filled[len(train) :]
    probe = val[:8]
    with torch.no_grad():
        a, _ = answer_losses(
            receiver, probe, pad_id=pad_id, module=module, spec=spec, translate=translate
        )
        b, _ = answer_losses(
            receiver,
            probe,
            pad_id=pad_id,
            module=module,
            spec=spec,
            translate=translate,
            upper=upper,
        )
    if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
        log.warning(
            "causal fast path disagrees with the full forward (max |dNLL| %.2e); using the "
            "full forward",
            float((a - b).abs().max()),
        )
        return train, val, None
    return train, val, upper


def _unfold(t: Translator, mean: torch.Tensor, std: torch.Tensor):
    """The linear translator in the standardised coordinates of the causal map (it predicts
    unit-norm states, so ``scale *`` it starts the causal map at the native norm)."""
    w = t.weight.double() * std.double()
    b = t.bias.double() + t.weight.double() @ mean.double()
    return w, b


def fit_causal_translator(
    receiver: nn.Module,
    module: nn.Module,
    examples: Sequence[CausalExample],
    *,
    init: Translator,
    spec: InjectionSpec,
    cfg: CausalConfig,
    seed: int,
    pad_id: int,
    token_x: torch.Tensor,
    token_y: torch.Tensor,
    token_val_frac: float,
    mode: str,
    fast: bool = True,
) -> Translator:
    """Train the affine map through the frozen ``receiver`` on ``examples``.

    ``token_x``/``token_y``: the linear translator's sender and raw receiver training tokens
    (in prompt order): their standardisation, native norm and held-out split are shared
    with the linear fit, and they feed the optional alignment term. ``fast``: run only the
    blocks above the injection site on cached block outputs (GPT-NeoX; checked against the
    full hooked forward before use, else the full forward).
    """
    if len(examples) < 2:
        raise HarnessError(
            f"only {len(examples)} causal training prompt(s)", "use more translator prompts"
        )
    n_val = min(max(1, round(len(examples) * cfg.val_frac)), len(examples) - 1)
    train, val = list(examples[:-n_val]), list(examples[-n_val:])
    tr, va = split_tokens(token_x.shape[0], token_val_frac)
    x_tr = token_x[tr].float()
    mean = x_tr.mean(0)
    std = x_tr.std(0, unbiased=False).clamp_min(1e-6)
    scale = float(token_y[tr].float().norm(dim=-1).mean())
    w0, b0 = _unfold(init, mean, std)
    fmap = _Map(w0, b0, cfg.rank)
    device = next(receiver.parameters()).device
    fmap.to(device)
    mean_d, std_d = mean.to(device), std.to(device)

    def translate(x: torch.Tensor) -> torch.Tensor:
        return scale * fmap((x.to(device).float() - mean_d) / std_d)

    frozen = [p.requires_grad for p in receiver.parameters()]
    was_training = receiver.training
    receiver.eval()
    for p in receiver.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(fmap.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, round(cfg.steps * cfg.warmup_frac))

    def lr_lambda(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (cfg.steps - step) / max(1, cfg.steps - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    yn_tr = token_y[tr].float()
    yn_tr = (yn_tr / yn_tr.norm(dim=-1, keepdim=True).clamp_min(_EPS)).to(device)

    upper: nn.ModuleList | None = None

    def held_out() -> tuple[float, float]:
        with torch.no_grad():
            loss, hit = answer_losses(
                receiver,
                val,
                pad_id=pad_id,
                module=module,
                spec=spec,
                translate=translate,
                upper=upper,
            )
        return float(loss.mean()), float(hit.mean())

    try:
        if fast:
            train, val, upper = _fast_path(receiver, module, train, val, pad_id, spec, translate)
        with torch.no_grad():
            clean_loss, clean_hit = answer_losses(receiver, val, pad_id=pad_id)
        init_loss, init_hit = held_out()
        best = (init_loss, init_hit, 0, _state(fmap))
        history: list[tuple[int, float]] = [(0, init_loss)]
        order: list[int] = []
        with torch.enable_grad():
            for step in range(1, cfg.steps + 1):
                if len(order) < cfg.batch_size:
                    order += torch.randperm(len(train), generator=gen).tolist()
                idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
                batch = [train[i] for i in idx]
                loss, _ = answer_losses(
                    receiver,
                    batch,
                    pad_id=pad_id,
                    module=module,
                    spec=spec,
                    translate=translate,
                    upper=upper,
                )
                total = loss.mean()
                if cfg.alignment_weight > 0:
                    rows = torch.randint(0, yn_tr.shape[0], (256,), generator=gen).to(device)
                    pred = fmap((x_tr[rows.cpu()].to(device) - mean_d) / std_d)
                    pred = pred / pred.norm(dim=-1, keepdim=True).clamp_min(_EPS)
                    total = (
                        total + cfg.alignment_weight * (pred - yn_tr[rows]).pow(2).sum(-1).mean()
                    )
                if not torch.isfinite(total.detach()):
                    raise HarnessError(
                        f"causal translator loss became {total.detach().item()} at step {step}",
                        "lower [causal] lr in the protocol",
                    )
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                sched.step()
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    v_loss, v_hit = held_out()
                    history.append((step, v_loss))
                    if v_loss < best[0]:
                        best = (v_loss, v_hit, step, _state(fmap))
    finally:
        for p, g in zip(receiver.parameters(), frozen, strict=True):
            p.requires_grad_(g)
        receiver.train(was_training)
    fmap.load_state_dict(best[3])
    with torch.no_grad():
        w_s = fmap.weight().detach().double().cpu() * scale
        b_s = fmap.bias.detach().double().cpu() * scale
    w_eff = (w_s / std.double()).float().contiguous()
    b_eff = (b_s - (w_s / std.double()) @ mean.double()).float().contiguous()
    config = TranslatorConfig(
        method=f"causal_{'last_token_' if spec.positions == 'last' else ''}{mode}",
        seed=seed,
        sender_dim=int(token_x.shape[1]),
        receiver_dim=int(token_y.shape[1]),
        recipe=dataclasses.asdict(cfg),
    )
    out = Translator(weight=w_eff, bias=b_eff, config=config)
    out.metrics = {
        **evaluate_translator(out, token_x[va].float(), token_y[va].float()),
        "objective": "receiver_answer_nll",
        "injection_mode": spec.mode,
        "causal": dataclasses.asdict(cfg),
        "init": "linear translator of the same seed, scaled to the native norm",
        "native_norm_scale": scale,
        "n_train_prompts": len(train),
        "n_val_prompts": len(val),
        "val_answer_nll_no_inject": clean_loss.mean().item(),
        "val_first_token_acc_no_inject": clean_hit.mean().item(),
        "val_answer_nll_init": init_loss,
        "val_first_token_acc_init": init_hit,
        "val_answer_nll": best[0],
        "val_first_token_acc": best[1],
        "best_step": best[2],
        "fast_path": upper is not None,
        "val_nll_history": history,
    }
    return out


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}
