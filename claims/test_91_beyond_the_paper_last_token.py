"""Beyond the paper -- last-token activation communication with the negative-result paper's
normalised translator T (issue #20).

Ramesh & Li, "Communicating Activations Between Language Model Agents" (ICML 2025, arXiv
2501.14082), report that combining one model's last-token activation with another's at one
layer (f = sum, mean or replace) beats natural-language communication by up to 27%. These
claims run their three f with the *negative-result paper's* linear translator T
(``last_token_sum/mean/replace``): T is fitted over every prompt position to L2-normalised
receiver states, so T(s) has about unit norm against a native norm in the hundreds, and the
layers are the protocol's relative depth. That is not their method: their own map W (raw
targets, searched layers) is tested in ``test_92_beyond_the_paper_ramesh_li``; the contrast
between the two maps is itself a finding. Per source and regime:

- the shared-context regime (``mini``, ``pythia``): both models read the same prompt, as in
  the paper this project replicates;
- the withheld regime (``mini-withheld``): the receiver does not see the context, so the
  sender knows something the receiver does not, as in Ramesh & Li's coordination games;
- the replication of Ramesh & Li's Section 4.1 (``mini-control``, added as a "positive
  control"): the withheld regime with the receiver as its own sender and an identity map (no
  T: the receiver's own states at its native scale). A working channel must show up there;
  its claim says whether this harness can detect transfer at all.

The last claim is the paper's own conjecture in the regime where it has room to be true:
``last_token_causal_replace``, the same last-token replace with a map trained through the
receiver on its answer loss (``harness.model.causal``).

Thresholds are the ones used throughout: a paired 95% CI pooled over seeds. The paper artifact
has no such runs (skipped).
"""

from __future__ import annotations

import pytest

from claims._util import ci, ci_values, cmp
from harness.conditions import CONDITIONS, LAST_TOKEN_CONDITIONS
from harness.sources import Source

# Ramesh & Li's f (sum, mean, replace) with the negative-result paper's normalised translator T
RAMESH_LI = tuple(c for c in LAST_TOKEN_CONDITIONS if CONDITIONS[c].translator_kind == "linear")
CAUSAL_LAST_TOKEN = "last_token_causal_replace"


def _need_last_token(source: Source) -> list[str]:
    present = [c for c in RAMESH_LI if c in source.summary]
    if not present:
        pytest.skip(
            f"{source.name} has no last-token runs (an extension beyond the paper: run it "
            "with `python -m harness run`, or use the mini sources)"
        )
    return present


def _withheld(source: Source) -> bool:
    return "{context}" not in source.protocol.prompt.receiver_template


def _regime(source: Source) -> str:
    withheld = _withheld(source)
    control = source.protocol.translator.method == "identity"
    return ("withheld" if withheld else "shared context") + (
        ", replication of Ramesh & Li Section 4.1" if control else ""
    )


def test_activation_communication_beats_the_natural_language_relay(
    source: Source, measured
) -> None:
    """Ramesh & Li: activation communication outperforms natural-language communication --
    some last-token condition's paired CI vs the relay lies above zero."""
    rows = [cmp(source, c, "nl_relay") for c in _need_last_token(source)]
    best = max(rows, key=lambda r: r.ci_low)
    msg = measured(f"{_regime(source)}: best {ci(best)}", **ci_values(best))
    assert best.ci_low > 0, msg


def test_last_token_injection_is_not_destructive(source: Source, measured) -> None:
    """Ramesh & Li's f acts on one position, leaving the rest of the receiver's computation
    intact -- no last-token condition's paired CI vs no-injection lies entirely below zero."""
    rows = [cmp(source, c, "no_inject") for c in _need_last_token(source)]
    worst = min(rows, key=lambda r: r.ci_high)
    msg = measured(f"{_regime(source)}: worst {ci(worst)}", **ci_values(worst))
    assert worst.ci_high >= 0, msg


def test_the_identical_model_replication_carries_the_withheld_answer(
    source: Source, measured
) -> None:
    """Ramesh & Li, Section 4.1 (their identical-model setting, here a control of the
    harness): with the receiver as its own sender and an identity map, injecting its
    full-context last-token state into its context-free prompt must beat no-injection (some
    last-token condition's paired CI above zero). Runs on identical-model pairs only."""
    if source.protocol.translator.method != "identity":
        pytest.skip(f"{source.name} is not an identical-model pair (identity map)")
    rows = [cmp(source, c, "no_inject") for c in _need_last_token(source)]
    best = max(rows, key=lambda r: r.ci_low)
    msg = measured(f"{_regime(source)}: best {ci(best)}", **ci_values(best))
    assert best.ci_low > 0, msg


def test_the_causally_trained_translator_beats_no_injection_in_the_withheld_regime(
    source: Source, measured
) -> None:
    """The paper's conjecture, where the receiver lacks what the sender knows: last-token
    replace with a map trained through the receiver on its answer loss
    (``last_token_causal_replace``) beats no-injection -- its paired CI vs no-injection lies
    above zero. Runs on withheld-regime sources that have its files."""
    if not _withheld(source):
        pytest.skip(
            f"{source.name} is not a withheld-regime source (the receiver sees the context)"
        )
    if CAUSAL_LAST_TOKEN not in source.summary:
        pytest.skip(f"{source.name} has no {CAUSAL_LAST_TOKEN} runs")
    row = cmp(source, CAUSAL_LAST_TOKEN, "no_inject")
    msg = measured(f"{_regime(source)}: {ci(row)}", **ci_values(row))
    assert row.ci_low > 0, msg
