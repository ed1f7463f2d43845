"""Batched greedy generation with left padding that equals batch-size-1 generation.

A small explicit loop instead of ``model.generate``: the prompt prefill is one forward over
the left-padded batch (attention mask, position ids counting from each prompt's first real
token), then one token per step through the KV cache. The repetition penalty and the
no-repeat n-gram ban follow Hugging Face's processors exactly but see only each row's real
tokens (prompt + generated), never the padding, so a padded row decodes as it would alone.
The answer is the new tokens only, decoded with special tokens skipped and stripped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.errors import HarnessError
from harness.model.activations import batches, left_pad
from harness.model.packing import packed_linears, real_rows_only

__all__ = [
    "GenerationSettings",
    "decode_new",
    "generate_batch",
    "generate_tokens",
    "generation_steps",
]

# (batch indices, padded prompt mask) -> a context manager around the batch's generation
# that has a ``rearm()`` (the injection hook), or ``None`` for plain generation.
InjectionFactory = Callable[[list[int], torch.Tensor], AbstractContextManager[Any]]


@dataclass(frozen=True)
class GenerationSettings:
    """Greedy decoding settings (the protocol's ``[decoding]`` plus special token ids)."""

    max_new_tokens: int
    repetition_penalty: float
    no_repeat_ngram_size: int
    eos_token_id: int | None
    pad_token_id: int

    @classmethod
    def from_protocol(
        cls, decoding: Any, tokenizer: Any, *, relay: bool = False
    ) -> GenerationSettings:
        """Settings from a protocol's ``decoding`` section and a tokenizer's special ids."""
        if decoding.do_sample:
            raise HarnessError("decoding.do_sample = true is not supported", "use greedy decoding")
        eos = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
        return cls(
            max_new_tokens=decoding.relay_max_new_tokens if relay else decoding.max_new_tokens,
            repetition_penalty=float(decoding.repetition_penalty),
            no_repeat_ngram_size=int(decoding.no_repeat_ngram_size),
            eos_token_id=eos,
            pad_token_id=int(pad),
        )


class _NgramBan:
    """Incremental no-repeat n-gram table of one row (same bans as HF's processor)."""

    def __init__(self, n: int, tokens: Sequence[int]) -> None:
        self.n = n
        self.hist: list[int] = []
        self.table: dict[tuple[int, ...], set[int]] = {}
        for t in tokens:
            self.push(t)

    def push(self, token: int) -> None:
        self.hist.append(token)
        if self.n > 0 and len(self.hist) >= self.n:
            gram = self.hist[-self.n :]
            self.table.setdefault(tuple(gram[:-1]), set()).add(gram[-1])

    def banned(self) -> list[int]:
        if self.n <= 0 or len(self.hist) + 1 < self.n:
            return []
        key = tuple(self.hist[len(self.hist) - self.n + 1 :]) if self.n > 1 else ()
        return list(self.table.get(key, ()))


class _RepetitionPenalty:
    """Hugging Face's repetition penalty over each row's real tokens (prompt + generated).

    Applied to the seen token ids only (gather, penalise, scatter back) rather than to the
    whole ``[B, vocab]`` score matrix: the same arithmetic on the same elements, so bitwise
    the same scores, at a few hundred elements per row instead of 50k. Each row's history
    holds its real prompt tokens with the padding slots set to the row's first real token
    (penalising a token twice writes the same value twice), then one slot per step.
    """

    def __init__(self, ids: torch.Tensor, mask: torch.Tensor, steps: int, penalty: float):
        self.penalty = penalty
        first = ids.gather(1, mask.argmax(1, keepdim=True))  # left padded: first real token
        self.hist = torch.cat(
            [torch.where(mask.bool(), ids, first), ids.new_empty((ids.shape[0], steps))], 1
        )
        self.n = ids.shape[1]

    def push(self, nxt: torch.Tensor, done: torch.Tensor) -> None:
        """Record the step's tokens; a finished row repeats its last token instead."""
        self.hist[:, self.n] = torch.where(done, self.hist[:, self.n - 1], nxt)
        self.n += 1

    def apply(self, scores: torch.Tensor) -> None:
        idx = self.hist[:, : self.n]
        g = scores.gather(1, idx)
        p = self.penalty
        scores.scatter_(1, idx, torch.where(g < 0, g * p, g / p))


def _process(
    logits: torch.Tensor,
    penalty: _RepetitionPenalty | None,
    bans: list[_NgramBan],
) -> torch.Tensor:
    scores = logits.float()
    if penalty is not None:
        penalty.apply(scores)
    for row, ban in enumerate(bans):
        banned = ban.banned()
        if banned:
            scores[row, banned] = float("-inf")
    return scores


@functools.cache
def _growing_layer_class() -> type | None:
    """``DynamicLayer`` that appends in place into a buffer with room for ``reserve`` more
    positions (built once; ``None`` without transformers' cache classes)."""
    try:
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # pragma: no cover - older transformers
        return None

    class GrowingLayer(DynamicLayer):
        def __init__(self, reserve: int) -> None:
            super().__init__()
            self.reserve = reserve
            self._buf: tuple[torch.Tensor, torch.Tensor] | None = None
            self._n = 0

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kw: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = self._n + key_states.shape[-2]
            if self._buf is None or n > self._buf[0].shape[-2]:
                cap = n + self.reserve
                new = tuple(
                    x.new_empty((*x.shape[:-2], cap, x.shape[-1]))
                    for x in (key_states, value_states)
                )
                if self._buf is not None:
                    for old, dst in zip(self._buf, new, strict=True):
                        dst[..., : self._n, :].copy_(old[..., : self._n, :])
                self._buf = new  # type: ignore[assignment]
            k, v = self._buf  # type: ignore[misc]
            k[..., self._n : n, :].copy_(key_states)
            v[..., self._n : n, :].copy_(value_states)
            self._n = n
            self.keys, self.values = k[..., :n, :], v[..., :n, :]
            return self.keys, self.values

    return GrowingLayer


def _growing_cache(model: nn.Module, reserve: int) -> Any:
    """A KV cache whose layers append in place into a preallocated buffer.

    transformers' ``DynamicLayer`` concatenates the whole cache with each new token (a copy of
    every key and value at every step, per layer); these layers allocate prompt + ``reserve``
    positions at the prefill and write each new token into the next free slot, handing the
    attention a view of the filled part. Returns ``None`` (the model's default cache) for
    models whose cache layers are not plain ``DynamicLayer``.
    """
    layer_class = _growing_layer_class()
    config = getattr(model, "config", None)
    if layer_class is None or config is None:
        return None
    from transformers.cache_utils import DynamicCache, DynamicLayer

    try:
        cache = DynamicCache(config=config)
    except Exception:  # pragma: no cover - a config the cache cannot read
        return None
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [layer_class(reserve) for _ in cache.layers]
    return cache


def _finite(logits: torch.Tensor, step: int) -> torch.Tensor:
    """The next-token logits, refused when any row holds NaN or inf (greedy argmax over them
    would silently emit a token id and the result file would look like a normal answer).

    One pass: a row's sum is non-finite iff the row holds NaN or inf (or its finite logits
    sum past 3e38, itself a broken model); only then are the rows looked at one by one."""
    if bool(torch.isfinite(logits.sum(-1, dtype=torch.float32)).all()):
        return logits
    bad = ~torch.isfinite(logits).all(dim=-1)
    rows = bad.nonzero().flatten().tolist() or list(range(logits.shape[0]))
    raise HarnessError(
        f"the model produced NaN/inf logits at generation step {step} for batch row(s) {rows[:5]}",
        "the weights or the injected states are numerically broken: check the model "
        "files and, for an injected condition, the translator and the injection",
    )


def _forward_params(model: nn.Module) -> Any:
    import inspect

    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic wrappers
        return {}


def _last_logits_only(model: nn.Module) -> dict[str, int]:
    """``logits_to_keep=1`` where the model's forward accepts it: a full-prompt forward then
    runs the LM head on the last position only (the only logits greedy decoding reads)
    instead of every prompt position."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_params(model) else {}


def cache_keyword(model: nn.Module) -> str:
    """The forward's KV-cache argument: ``cache`` (recent transformers, e.g. 5.24) or
    ``past_key_values`` (earlier releases, e.g. the 5.17 of some GPU images)."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def _returned_cache(res: Any) -> Any:
    cache = getattr(res, "cache", None)
    return cache if cache is not None else getattr(res, "past_key_values", None)


def generate_batch(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    settings: GenerationSettings,
    *,
    use_cache: bool = True,
    injection: Any = None,
) -> list[list[int]]:
    """Greedy-generate new tokens for one batch of prompts; eos ends a row (and is dropped).

    ``injection``: an entered :class:`~harness.model.injection.PrefillInjection` (or ``None``);
    without a KV cache it is re-armed before every full-sequence forward.
    """
    steps = generation_steps(model, token_ids, settings, use_cache=use_cache, injection=injection)
    with torch.inference_mode():
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value


def generation_steps(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    settings: GenerationSettings,
    *,
    use_cache: bool = True,
    injection: Any = None,
) -> Generator[int, None, list[list[int]]]:
    """:func:`generate_batch` one model forward at a time: each ``next()`` runs the work up to
    and including the next forward (the prefill, then one per new token) and yields its step
    number; the generator returns the new tokens (``StopIteration.value``).

    The caller holds ``torch.inference_mode()`` around every ``next()``. Two of these can be
    advanced in turns (the benchmark's lockstep A/B): they share no state but the model.
    """
    if not torch.is_inference_mode_enabled():
        raise HarnessError(
            "generation_steps runs outside torch.inference_mode()",
            "advance it inside `with torch.inference_mode():`, or call generate_batch",
        )
    device = next(model.parameters()).device
    empty = [i for i, t in enumerate(token_ids) if len(t) == 0]
    if empty:
        raise HarnessError(
            f"prompt {empty[0]} of the batch has no tokens",
            "every prompt needs at least one token: check the eval rows and the tokenizer",
        )
    ids, mask, pos = left_pad(token_ids, settings.pad_token_id, device)
    bsz = ids.shape[0]
    penalty = (
        _RepetitionPenalty(ids, mask, settings.max_new_tokens, settings.repetition_penalty)
        if settings.repetition_penalty != 1.0
        else None
    )
    n = settings.no_repeat_ngram_size
    bans = [_NgramBan(n, list(t)) for t in token_ids] if n > 0 else []
    out: list[list[int]] = [[] for _ in range(bsz)]
    done = torch.zeros(bsz, dtype=torch.bool, device=device)
    eos = settings.eos_token_id
    keep = _last_logits_only(model)
    grown = _growing_cache(model, settings.max_new_tokens) if use_cache else None
    cache_kw = cache_keyword(model)
    extra = {cache_kw: grown} if grown is not None else {}
    with real_rows_only(mask):
        res = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=use_cache,
            **keep,
            **extra,
        )
    yield 0
    cache = _returned_cache(res) if use_cache else None
    logits = _finite(res.logits[:, -1], 0)
    full_ids, full_mask, full_pos = ids, mask, pos
    for step in range(settings.max_new_tokens):
        scores = _process(logits, penalty, bans)
        nxt = scores.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, settings.pad_token_id), nxt)
        for row, (tok, finished) in enumerate(zip(nxt.tolist(), done.tolist(), strict=True)):
            if finished:
                continue
            if eos is not None and tok == eos:
                continue
            out[row].append(tok)
            if bans:
                bans[row].push(tok)
        if penalty is not None:
            penalty.push(nxt, done)
        if eos is not None:
            done = done | (nxt == eos)
        if bool(done.all()) or step == settings.max_new_tokens - 1:
            break
        step_mask = torch.ones((bsz, 1), dtype=mask.dtype, device=device)
        step_pos = full_pos[:, -1:] + 1
        full_ids = torch.cat([full_ids, nxt[:, None]], dim=1)
        full_mask = torch.cat([full_mask, step_mask], dim=1)
        full_pos = torch.cat([full_pos, step_pos], dim=1)
        if use_cache:
            res = model(
                input_ids=nxt[:, None],
                attention_mask=full_mask,
                position_ids=step_pos,
                use_cache=True,
                **{cache_kw: cache},
            )
            cache = _returned_cache(res)
        else:
            if injection is not None:
                injection.rearm()
            res = model(
                input_ids=full_ids,
                attention_mask=full_mask,
                position_ids=full_pos,
                use_cache=False,
                **keep,
            )
        yield step + 1
        logits = _finite(res.logits[:, -1], step + 1)
    return out


def generate_tokens(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    settings: GenerationSettings,
    *,
    batch_size: int = 32,
    use_cache: bool = True,
    injection: InjectionFactory | None = None,
    progress: Callable[[int], None] | None = None,
    length_sorted: bool = True,
) -> list[list[int]]:
    """Generate for every prompt, in batches of ``batch_size``; results in input order.

    Batches are length-sorted buckets (``length_sorted``, the default): prompts ordered by
    token count (stable), so each batch pads to a near-uniform width. On the paper's eval
    (26-89 tokens) this raises the share of real prompt tokens in a padded batch from 61% to
    96%. ``injection(indices, mask)`` builds the batch's hook context, ``indices`` being the
    batch's positions in ``token_ids`` and ``mask`` its prompt mask ``[B, L]``.
    """
    results: list[list[int] | None] = [None] * len(token_ids)
    with packed_linears(model):
        _generate_all(
            model,
            token_ids,
            settings,
            batch_size,
            use_cache,
            injection,
            progress,
            length_sorted,
            results,
        )
    return [r for r in results if r is not None]


def _generate_all(
    model: nn.Module,
    token_ids: Sequence[Sequence[int]],
    settings: GenerationSettings,
    batch_size: int,
    use_cache: bool,
    injection: InjectionFactory | None,
    progress: Callable[[int], None] | None,
    length_sorted: bool,
    results: list[list[int] | None],
) -> None:
    for idx in batches(token_ids, batch_size, length_sorted=length_sorted):
        batch = [token_ids[i] for i in idx]
        _, mask, _ = left_pad(batch, settings.pad_token_id)
        ctx = injection(idx, mask) if injection is not None else nullcontext()
        with ctx as hook:
            out = generate_batch(model, batch, settings, use_cache=use_cache, injection=hook)
        for i, toks in zip(idx, out, strict=True):
            results[i] = toks
        if progress is not None:
            progress(len(idx))


def decode_new(tokenizer: Any, new_tokens: Sequence[int]) -> str:
    """The answer text: new tokens only, special tokens skipped, stripped."""
    return tokenizer.decode(list(new_tokens), skip_special_tokens=True).strip()
