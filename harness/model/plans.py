"""The one interpreter of injection plans: which vector each receiver prompt position gets.

A condition's :class:`~harness.conditions.InjectionPlan` becomes an
:class:`~harness.conditions.InjectionSpec`; these functions turn a spec plus one sample's
translated sender states (its own, or a shuffle donor's) into the source vectors that the
injection hook combines with the receiver's block output. The runner's inference
(``harness.run.runner``) and training through the receiver (``harness.model.causal``) both
call :func:`sample_sources`, so a map is trained on exactly the input it later runs on.

Rules, read from the spec alone:
- ``positions = "last"``: only the last prompt position changes; it gets the sender's last
  translated state (sender and receiver prompts may differ in length).
- ``broadcast_last``: every prompt position gets the last translated state (the paper's
  additive injection).
- otherwise each position gets its own translated state (sender and receiver token ids
  match, so the lengths agree).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from harness.conditions import InjectionPlan, InjectionSpec, Shuffle
from harness.errors import HarnessError
from harness.model.injection import random_directions, shuffle_donors

__all__ = ["Planned", "build_sources", "plan_sources", "reported_vectors", "sample_sources"]


def sample_sources(spec: InjectionSpec, translated: torch.Tensor, n_positions: int) -> torch.Tensor:
    """The ``[n_positions, d]`` source vectors of one sample's ``n_positions`` receiver prompt
    positions, from its ``[n_sender, d]`` translated sender states (see the module rules).

    Positions a last-token spec leaves alone hold zeros (the hook does not read them).
    Differentiable in ``translated``.
    """
    if translated.ndim != 2 or translated.shape[0] == 0:
        raise HarnessError(
            f"translated states of shape {tuple(translated.shape)}: need [positions, width]"
        )
    if spec.positions == "last":
        last = translated[-1:]
        pad = last.new_zeros((n_positions - 1, translated.shape[-1]))
        return torch.cat([pad, last], dim=0)
    if spec.broadcast_last:
        return translated[-1:].expand(n_positions, -1)
    if translated.shape[0] != n_positions:
        raise HarnessError(
            f"a per-position injection got {translated.shape[0]} translated states for "
            f"{n_positions} receiver positions",
            "sequence-level injection needs identical sender and receiver token ids",
        )
    return translated


def plan_sources(
    spec: InjectionSpec,
    translated: Sequence[torch.Tensor],
    n_positions: Sequence[int],
    donors: Sequence[int] | None = None,
) -> list[torch.Tensor]:
    """:func:`sample_sources` for every sample: sample ``i`` (of ``n_positions[i]`` receiver
    positions) gets ``translated[donors[i]]`` (a shuffle's donor), or its own states."""
    rows = range(len(n_positions)) if donors is None else donors
    if donors is not None and len(donors) != len(n_positions):
        raise HarnessError(f"{len(donors)} donors for {len(n_positions)} samples")
    return [sample_sources(spec, translated[j], n) for j, n in zip(rows, n_positions, strict=True)]


def reported_vectors(spec: InjectionSpec, translated: torch.Tensor) -> torch.Tensor:
    """The translated vectors a result file reports (``translated_norm``) for one sample: the
    last state alone for a last-token spec, otherwise every translated state."""
    return translated[-1:] if spec.positions == "last" else translated


@dataclass
class Planned:
    """What a plan injects: the eval rows that run (``idx``; a strict shuffle drops some), their
    source vectors, the translated vectors the file reports (``None``: not a translated plan)
    and the donors a shuffle drew."""

    idx: list[int]
    sources: list[torch.Tensor]
    reported: list[torch.Tensor] | None = None
    shuffle: Shuffle | None = None


def build_sources(
    plan: InjectionPlan,
    spec: InjectionSpec,
    lengths: Sequence[int],
    width: int,
    seed: int | None,
    *,
    receiver_states: Callable[[], Sequence[torch.Tensor]],
    translated: Callable[[], Sequence[torch.Tensor]],
) -> Planned:
    """Interpret ``plan`` (run under ``spec``) for samples of receiver prompt ``lengths``.

    ``receiver_states`` / ``translated`` give the receiver's own block outputs and the
    sender's translated states per sample; each is called only if the plan needs it.
    ``seed`` draws the random directions and the shuffle's donors (``None``: a deterministic
    condition, which draws nothing).
    """
    n = len(lengths)

    def seeded() -> int:
        if seed is None:
            raise HarnessError(f"a {plan.states} plan draws at random and needs a seed")
        return seed

    if plan.states == "receiver":
        return Planned(list(range(n)), list(receiver_states()))
    if plan.states == "receiver_mean":  # one vector: the mean over every prompt position
        mean = torch.cat([s.float() for s in receiver_states()]).mean(0)
        return Planned(list(range(n)), [mean.expand(k, -1) for k in lengths])
    if plan.states == "zero":
        return Planned(list(range(n)), [torch.zeros(k, width) for k in lengths])
    if plan.states == "random":
        return Planned(list(range(n)), random_directions(lengths, width, seeded()))
    states = list(translated())
    idx, own = list(range(n)), list(range(n))
    shuffle = None
    if plan.shuffle is not None:
        strict = plan.shuffle == "strict"
        donors, singles = shuffle_donors(lengths, seeded(), strict=strict)
        idx = [i for i in range(n) if donors[i] is not None]
        own = [j for j in donors if j is not None]
        shuffle = Shuffle(tuple(donors), singles, strict)
    sources = plan_sources(spec, states, [lengths[i] for i in idx], own)
    reported = [reported_vectors(spec, states[j]) for j in own]
    return Planned(idx, sources, reported, shuffle)
