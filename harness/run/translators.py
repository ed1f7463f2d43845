"""The translator stage of a run: the training tokens, the paper's linear translator per
seed and the maps trained through the receiver, each fitted once and cached on disk.

It reads what it needs from the run through :class:`RunContext` (the protocol, the cache,
prompt formatting, encoding and capture), so it depends on no runner type.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from harness import events
from harness.analysis.evalset import EvalRow, load_evalset
from harness.conditions import CONDITIONS
from harness.errors import HarnessError
from harness.model.activations import Activations
from harness.model.translator import Translator, fit_translator
from harness.protocol import Protocol as ExperimentProtocol
from harness.run.cache import RunCache
from harness.run.roles import Direction, Role

__all__ = ["RunContext", "TranslatorStage"]

log = logging.getLogger(__name__)


class RunContext(Protocol):
    """What the translator stage needs from a run."""

    p: ExperimentProtocol
    cache: RunCache
    artifact: str | None
    train_limit: int | None

    @property
    def _init_tag(self) -> str: ...

    def prompts(self, rows: Sequence[EvalRow], *, receiver: bool = False) -> list[str]: ...

    def encode(self, texts: Sequence[str], tok: Any) -> list[list[int]]: ...

    def capture(self, role: Role, ids: list[list[int]], labels: Sequence[str]) -> Activations: ...


class TranslatorStage:
    """Fits and caches a run's translators (see the module docstring)."""

    def __init__(self, run: RunContext) -> None:
        self.run = run

    def train_tokens(self, d: Direction) -> tuple[torch.Tensor, torch.Tensor]:
        if d.train is None:
            path = self.run.p.translator_train_path(self.run.artifact)
            rows = load_evalset(path).rows
            cap = self.run.p.translator.max_train_prompts
            if self.run.train_limit is not None:
                cap = min(cap, self.run.train_limit)
            texts = self.run.prompts(rows[:cap])
            ids_a = self.run.encode(texts, d.sender.tokenizer)
            ids_b = self.run.encode(texts, d.receiver.tokenizer)
            for row, a, b in zip(rows, ids_a, ids_b, strict=False):
                if a != b:
                    raise HarnessError(
                        f"translator prompt {row.sample_id}: sender and receiver token ids differ",
                        "the translator pairs positions, so both models must share a tokenizer",
                    )
            labels = [f"{r.sample_id} (translator training)" for r in rows[: len(ids_a)]]
            sender_acts = self.run.capture(d.sender, ids_a, labels)
            xa = sender_acts.concat()
            xb = self.run.capture(d.receiver, ids_b, labels).concat()
            d.train = (xa, xb)
            d.train_prompts = (rows[: len(ids_b)], ids_b, sender_acts)
        return d.train

    def _cached_translator(
        self, d: Direction, key: str, fit: Callable[[], Translator], what: str
    ) -> tuple[Translator, str]:
        """The translator cached under ``key`` or ``fit()``'s (timed, stored, logged)."""

        def timed_fit() -> Translator:
            t0 = time.perf_counter()
            tr = fit()
            tr.metrics["fit_seconds"] = round(time.perf_counter() - t0, 3)
            return tr

        tr, rel, fitted = self.run.cache.translator(
            key, timed_fit, sender_dim=d.sender.width, receiver_dim=d.receiver.width
        )
        if fitted:
            events.record("translator", key=f"{self.run.p.hash}:{key}")
            log.info("%s %s: %s", what, key, _headline(tr.metrics))
        return tr, rel

    def linear(self, d: Direction, seed: int) -> tuple[Translator, str]:
        """The protocol's linear translator for ``seed`` (fitted once, cached on disk)."""
        if seed not in d.translators:
            ts = self.run.p.translator

            def fit() -> Translator:
                xa, xb = self.train_tokens(d)
                return fit_translator(xa, xb, ts, seed=seed)

            d.translators[seed] = self._cached_translator(
                d, self._translator_key(d, seed), fit, "translator"
            )
        return d.translators[seed]

    def _translator_key(self, d: Direction, seed: int, kind: str = "") -> str:
        """Cache key of a translator (``kind`` prefixes non-linear ones)."""
        ts = self.run.p.translator
        n_train = (
            ts.max_train_prompts
            if self.run.train_limit is None
            else min(ts.max_train_prompts, self.run.train_limit)
        )
        return f"{kind}{self.run._init_tag}-tok{d.tok_tag}-{d.direction}-seed{seed}-n{n_train}"

    def causal(self, d: Direction, seed: int, condition: str) -> tuple[Translator, str]:
        """The translator trained through the receiver for ``condition`` (cached like the
        linear one; initialised from the linear translator of the same seed)."""
        if (condition, seed) in d.translators:
            return d.translators[(condition, seed)]
        from harness.model.causal import CausalExample, fit_causal_translator

        plan = CONDITIONS[condition].plan
        assert plan is not None and plan.translator == "causal"
        mode = plan.mode
        linear, _ = self.linear(d, seed)

        def fit() -> Translator:
            xa, xb = self.train_tokens(d)
            assert d.train_prompts is not None
            rows, ids_b, acts = d.train_prompts
            tok = d.receiver.tokenizer
            if plan.last_token:  # the receiver reads its own prompt (maybe without context)
                ids_b = self.run.encode(self.run.prompts(rows, receiver=True), tok)
            examples = [
                CausalExample(
                    tuple(ids),
                    states,
                    tuple(tok(" " + row.answer, add_special_tokens=False)["input_ids"]),
                )
                for row, ids, states in zip(rows, ids_b, acts.states, strict=True)
            ]
            return fit_causal_translator(
                d.receiver.model,
                d.receiver.module,
                examples,
                init=linear,
                spec=plan.spec(self.run.p),
                cfg=self.run.p.causal,
                seed=seed,
                pad_id=d.receiver.pad_id,
                token_x=xa,
                token_y=xb,
                token_val_frac=self.run.p.translator.val_frac,
                mode=mode,
            )

        kind = f"causal_{'last_token_' if plan.last_token else ''}{mode}-"
        key = self._translator_key(d, seed, kind=kind)
        d.translators[(condition, seed)] = self._cached_translator(d, key, fit, "causal translator")
        return d.translators[(condition, seed)]


def _headline(metrics: dict[str, Any]) -> str:
    """A translator's fit in one line for the log."""
    if "val_answer_nll" in metrics:
        return (
            f"held-out answer NLL {metrics['val_answer_nll']:.3f} (no injection "
            f"{metrics['val_answer_nll_no_inject']:.3f}, init {metrics['val_answer_nll_init']:.3f})"
        )
    return ", ".join(
        f"{k} {metrics[k]:.4f}" for k in ("normalized_r2", "normalized_cosine") if k in metrics
    )
