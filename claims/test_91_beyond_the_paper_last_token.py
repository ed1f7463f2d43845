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

Thresholds are the ones used throughout: a paired 95% CI pooled over seeds, i.e. a one-sided
2.5% test on each side. The paper artifact has no such runs (skipped).

Multiplicity (issue #27, item 9). A claim that "some" of Ramesh & Li's three f beats a
baseline makes three comparisons, so the two such claims (beats the relay; the identical-model
control beats no-injection) are each a family of m = 3 one-sided hypotheses "f beats the
baseline", corrected by Holm's step-down method at family-wise alpha = 0.025 (the one-sided
level of the suite's 95% CI): the claim holds when Holm rejects at least one, i.e. when the
smallest one-sided bootstrap p-value is at most 0.025 / 3 (Holm's first step). The p-values
are percentile-bootstrap ones drawn with the comparison rows' seeds (the same draws where no
seed file is counted once, see Power; ``harness.analysis.stats.percentile_bootstrap_p``,
``holm``). The claim that no f is
destructive is the opposite kind: it holds when no f shows harm, and a correction would only
make it easier to pass, so each f is tested at the uncorrected 95% CI (the stricter reading).
The causal-map claim names its one condition in advance (no correction). None of these claims
is a sign test over seeds: each pools the seeds' paired rows.

Power. Every claim states the smallest effect it could have detected, so a non-replication
reads with its power: the paired difference d a one-sided test at its level finds with 80%
power, d = z x SD / sqrt(n) with z = z_{1-level} + z_0.8 and SD, n the paired deltas'; since
a mean paired change d of 0/1 outcomes moves at least a fraction d of the rows, SD is at
least sqrt(d (1 - d)), so d is never below z^2 / (n + z^2) (a condition that changes no
answer still has a detectable effect). For a family, the largest d over its f: an effect
that size in any one f is found. Seed files whose predictions agree row by row carry one
run's outcomes (the identity map of ``mini-control`` does not depend on the seed; a sum or
mean that changes no answer gives the same predictions on every seed), so they count once in
n and in the Holm p-values (the 95% CIs shown are the suite's pooled ones).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np
import pytest

from claims._util import ci, ci_values, cmp
from harness.analysis.metrics import PRIMARY_METRIC
from harness.analysis.results import ResultSet
from harness.analysis.stats import holm, label_seed, percentile_bootstrap_p
from harness.analysis.tables import ComparisonRow, paired_deltas
from harness.conditions import CONDITIONS, LAST_TOKEN_CONDITIONS
from harness.sources import Source

# Ramesh & Li's f (sum, mean, replace) with the negative-result paper's normalised translator T
RAMESH_LI = tuple(c for c in LAST_TOKEN_CONDITIONS if CONDITIONS[c].translator_kind == "linear")
CAUSAL_LAST_TOKEN = "last_token_causal_replace"
# One side of the suite's two-sided 95% CI, and the power every detectable effect is stated at.
ALPHA = 0.025
POWER = 0.8
_ND = statistics.NormalDist()


@dataclass(frozen=True)
class Paired:
    """One condition's paired comparison as a claim tests it."""

    row: ComparisonRow  # the suite's pooled row (its 95% CI is what the text and findings show)
    n: int  # paired deltas over distinct runs (a seed file copying another counts once)
    sd: float  # their standard deviation
    p: float  # one-sided bootstrap p-value of "the condition beats the baseline"

    def detectable(self, level: float) -> float:
        """The smallest paired gain (or harm) a one-sided test at ``level`` finds with
        ``POWER`` (proportion; the module docstring derives it)."""
        z = _ND.inv_cdf(1 - level) + _ND.inv_cdf(POWER)
        return max(z * self.sd / math.sqrt(self.n), z * z / (self.n + z * z))


def _distinct_deltas(source: Source, condition: str, baseline: str) -> np.ndarray:
    """The paired deltas of ``condition`` vs ``baseline`` (fwd), pooled over its runs, with a
    run whose every prediction repeats an earlier run's left out (one run, not two)."""
    runs, seen = [], set()
    for run in source.results.runs(condition, "fwd"):
        key = tuple((r["sample_id"], r["prediction"]) for r in run.per_sample)
        if key not in seen:
            seen.add(key)
            runs.append(run)
    deltas, _ = paired_deltas(
        ResultSet([*runs, *source.results.runs(baseline, "fwd")]), condition, baseline
    )
    return deltas


def _tested(source: Source, condition: str, baseline: str) -> Paired:
    row = cmp(source, condition, baseline)
    deltas = _distinct_deltas(source, condition, baseline)
    p = percentile_bootstrap_p(
        deltas,
        alternative="greater",
        resamples=source.protocol.stats.bootstrap_resamples,
        seed=label_seed(condition, baseline, PRIMARY_METRIC, "fwd"),  # the row's own draws
    )
    sd = float(np.std(deltas, ddof=1)) if deltas.size > 1 else 0.0
    return Paired(row=row, n=int(deltas.size), sd=sd, p=p)


def _some_f_beats(source: Source, baseline: str, measured) -> None:
    """Holm over the f present (a family of m one-sided tests at ``ALPHA``): the claim holds
    when at least one is rejected. The message names each f's adjusted p-value; the numbers
    are those of the f Holm ranks first (ties: the highest CI lower bound)."""
    tested = [_tested(source, c, baseline) for c in _need_last_token(source)]
    adjusted = holm([t.p for t in tested])
    m = len(tested)
    ranked = sorted(zip(adjusted, tested, strict=True), key=lambda a: (a[0], -a[1].row.ci_low))
    best_adj, best = ranked[0]
    detectable = max(t.detectable(ALPHA / m) for t in tested)
    holm_text = ", ".join(
        f"{t.row.condition} {a:.4f}" for a, t in zip(adjusted, tested, strict=True)
    )
    msg = measured(
        f"{_regime(source)}: best {ci(best.row)}; Holm-adjusted one-sided p ({m} f, "
        f"family-wise {ALPHA}): {holm_text}; smallest detectable gain "
        f"{detectable * 100:.2f} pp ({POWER:.0%} power at {ALPHA}/{m})",
        **ci_values(best.row),
        holm_p=best_adj,
        detectable=detectable,
    )
    assert best_adj <= ALPHA, msg


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
    some last-token condition beats the relay: Holm over the three f (family of 3, one-sided,
    family-wise 2.5%) rejects at least one "f is no better than the relay"."""
    _some_f_beats(source, "nl_relay", measured)


def test_last_token_injection_is_not_destructive(source: Source, measured) -> None:
    """Ramesh & Li's f acts on one position, leaving the rest of the receiver's computation
    intact -- no last-token condition's paired 95% CI vs no-injection lies entirely below
    zero. Each f is tested uncorrected (a correction would make a claim of no harm easier to
    pass); the message states the smallest harm each test finds with 80% power, and the
    numbers the largest of the three."""
    tested = [_tested(source, c, "no_inject") for c in _need_last_token(source)]
    worst = min(tested, key=lambda t: t.row.ci_high)
    detectable = max(t.detectable(ALPHA) for t in tested)
    each = ", ".join(f"{t.row.condition} {t.detectable(ALPHA) * 100:.2f} pp" for t in tested)
    msg = measured(
        f"{_regime(source)}: worst {ci(worst.row)}; smallest detectable harm ({POWER:.0%} "
        f"power, one-sided {ALPHA}): {each}",
        **ci_values(worst.row),
        detectable=detectable,
    )
    assert worst.row.ci_high >= 0, msg


def test_the_identical_model_replication_carries_the_withheld_answer(
    source: Source, measured
) -> None:
    """Ramesh & Li, Section 4.1 (their identical-model setting, here a control of the
    harness): with the receiver as its own sender and an identity map, injecting its
    full-context last-token state into its context-free prompt must beat no-injection: Holm
    over the three f (family of 3, one-sided, family-wise 2.5%) rejects at least one "f is no
    better than no-injection". Runs on identical-model pairs only."""
    if source.protocol.translator.method != "identity":
        pytest.skip(f"{source.name} is not an identical-model pair (identity map)")
    _some_f_beats(source, "no_inject", measured)


def test_the_causally_trained_translator_beats_no_injection_in_the_withheld_regime(
    source: Source, measured
) -> None:
    """The paper's conjecture, where the receiver lacks what the sender knows: last-token
    replace with a map trained through the receiver on its answer loss
    (``last_token_causal_replace``) beats no-injection -- its paired CI vs no-injection lies
    above zero (one condition named in advance: no correction). Runs on withheld-regime
    sources that have its files."""
    if not _withheld(source):
        pytest.skip(
            f"{source.name} is not a withheld-regime source (the receiver sees the context)"
        )
    if CAUSAL_LAST_TOKEN not in source.summary:
        pytest.skip(f"{source.name} has no {CAUSAL_LAST_TOKEN} runs")
    tested = _tested(source, CAUSAL_LAST_TOKEN, "no_inject")
    row, detectable = tested.row, tested.detectable(ALPHA)
    msg = measured(
        f"{_regime(source)}: {ci(row)}; smallest detectable gain {detectable * 100:.2f} pp "
        f"({POWER:.0%} power, one-sided {ALPHA})",
        **ci_values(row),
        detectable=detectable,
    )
    assert row.ci_low > 0, msg
