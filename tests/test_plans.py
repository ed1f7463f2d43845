"""The one interpreter of injection plans: inference and training build the same sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.conditions import CONDITIONS, InjectionSpec
from harness.errors import HarnessError
from harness.model.causal import CausalExample, _batch, _sites, _sources
from harness.model.plans import build_sources, sample_sources
from harness.protocol import load_protocol

MINI = load_protocol(Path(__file__).resolve().parents[1] / "protocols" / "mini.toml")
D_S, D_R = 6, 5
TRANSLATED = [n for n, c in CONDITIONS.items() if c.plan and c.plan.states == "translated"]


def _examples(last_token: bool) -> list[CausalExample]:
    """Four prompts of different lengths; a last-token plan gets sender prompts of other
    lengths than the receiver's (the withheld regime), a sequence-level plan the same."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for k, n_b in enumerate((3, 5, 4, 5)):
        n_s = n_b + 2 if last_token else n_b
        states = torch.randn(n_s, D_S, generator=gen) * (k + 1)
        out.append(CausalExample(tuple(range(10, 10 + n_b)), states, (7, 8)))
    return out


def _translate() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Linear(D_S, D_R)


def _changed(spec: InjectionSpec, full: torch.Tensor) -> torch.Tensor:
    """The rows of one sample's inference sources that the hook reads: all, or the last."""
    return full[-1:] if spec.positions == "last" else full


@pytest.mark.parametrize("name", TRANSLATED)
def test_training_and_inference_inject_the_same_vectors_for_every_translated_condition(
    name: str,
) -> None:
    """For every registered condition that injects translated states, the vectors the
    runner's generation writes at each changed position (build_sources) are exactly those
    that training through the receiver writes at its injection sites (causal._sources)."""
    plan = CONDITIONS[name].plan
    assert plan is not None
    spec = plan.spec(MINI)
    examples = _examples(plan.last_token)
    tr = _translate()
    with torch.no_grad():
        translated = [tr(e.sender_states) for e in examples]
        lengths = [len(e.prompt_ids) for e in examples]
        planned = build_sources(
            plan, spec, lengths, D_R, 42, receiver_states=list, translated=lambda: translated
        )
        _, _, _, prompt, _ = _batch(examples, pad_id=0)
        src = _sources(examples, tr, prompt, spec)
        sites = _sites(prompt, spec)
    rows = planned.idx
    if plan.shuffle is not None:  # training never shuffles; inference uses donors' states
        assert planned.shuffle is not None
        donors = [planned.shuffle.donors[i] for i in rows]
        for i, j in zip(rows, donors, strict=True):
            assert j is not None
            assert torch.equal(planned.sources[rows.index(i)], translated[j])
        return
    assert rows == list(range(len(examples)))
    for i, full in enumerate(planned.sources):
        assert torch.equal(_changed(spec, full), src[i][sites[i]]), (name, i)


@pytest.mark.parametrize("broadcast", [True, False])
def test_an_additive_plan_broadcasts_only_when_its_spec_says_so(broadcast: bool) -> None:
    """The broadcast of the last translated state is the spec's explicit ``broadcast_last``,
    not a property of the additive mode: a per-position additive spec is trained and run on
    each position's own vector, on both paths."""
    spec = InjectionSpec("additive", scale=0.5, broadcast_last=broadcast)
    examples = _examples(last_token=False)
    tr = _translate()
    with torch.no_grad():
        _, _, _, prompt, _ = _batch(examples, pad_id=0)
        src = _sources(examples, tr, prompt, spec)
        for i, e in enumerate(examples):
            t = tr(e.sender_states)
            want = t[-1:].expand_as(t) if broadcast else t
            assert torch.equal(sample_sources(spec, t, len(t)), want)
            assert torch.equal(src[i][prompt[i]], want)
    assert not torch.equal(src[3][prompt[3]][0], src[3][prompt[3]][-1]) or broadcast


def test_a_per_position_plan_with_mismatched_lengths_is_a_one_line_error() -> None:
    with pytest.raises(HarnessError, match="identical sender and receiver token ids"):
        sample_sources(InjectionSpec("replace"), torch.ones(4, 3), 5)


def test_a_last_token_plan_changes_only_the_last_position() -> None:
    t = torch.arange(12.0).reshape(4, 3)
    got = sample_sources(InjectionSpec("replace", positions="last"), t, 6)
    assert got.shape == (6, 3)
    assert torch.equal(got[-1], t[-1]) and not got[:-1].any()
