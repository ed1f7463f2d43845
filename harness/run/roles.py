"""The two sides of a direction: who sends, who receives, and what they share.

A :class:`Role` is one model as the run uses it (block, tokenizer, prompt ids, decoding,
captured states); a :class:`Direction` pairs a sender Role with a receiver Role and holds
what that direction's conditions share (translators, training tokens, Ramesh & Li's setup),
computed lazily, once. Used by every stage of the runner and by the records it writes.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.analysis.evalset import EvalRow
from harness.io import short_hash
from harness.model.activations import Activations

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from harness.model.generate import GenerationSettings
    from harness.model.translator import Translator

__all__ = ["Direction", "Role"]


@dataclass
class Role:
    """One side of a direction: the sender or the receiver.

    model and its block ``module`` at ``site`` (resolved from the relative depth), its
    ``tokenizer``, the eval prompts it reads as token ids (``ids``: the protocol's
    ``template`` for the sender, ``receiver_template`` for the receiver), the greedy
    decoding it generates with (the relay for the sender, the answer for the receiver), and
    its block outputs over ``ids`` once captured (``states``)."""

    kind: str  # "sender" or "receiver"
    name: str
    model: PreTrainedModel
    site: str
    module: nn.Module
    tokenizer: PreTrainedTokenizerBase
    ids: list[list[int]]
    settings: GenerationSettings
    states: Activations | None = None

    @property
    def width(self) -> int:
        """Hidden width of the residual stream (the input embedding size)."""
        emb = self.model.get_input_embeddings()
        assert isinstance(emb, nn.Embedding)
        return int(emb.weight.shape[1])

    @property
    def pad_id(self) -> int:
        return self.settings.pad_token_id


@dataclass
class Direction:
    """Everything one direction's conditions share (computed lazily, once)."""

    direction: str
    sender: Role
    receiver: Role
    # seed -> the linear translator, (condition, seed) -> a causal one; with its checkpoint
    translators: dict[int | tuple[str, int], tuple[Translator, str]] = field(default_factory=dict)
    train: tuple[torch.Tensor, torch.Tensor] | None = None
    # translator-training rows, their receiver prompt ids and per-prompt sender states
    train_prompts: tuple[Sequence[EvalRow], list[list[int]], Activations] | None = None
    # Ramesh & Li's shared setup (their W, layer searches: harness.run.ramesh_li)
    ramesh_li: Any = None

    @functools.cached_property
    def tok_tag(self) -> str:
        """The two tokenizers, by their vocabularies rather than their paths (a moved checkout
        keeps its translator cache); computed once per direction."""
        return short_hash(
            "|".join(
                json.dumps(sorted(r.tokenizer.get_vocab().items()))
                for r in (self.sender, self.receiver)
            )
        )
