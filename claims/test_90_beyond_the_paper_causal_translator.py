"""Beyond the paper -- the closing conjecture (Sections 1 and 6), tested as a hypothesis.

Section 6 conjectures that useful model-to-model activation communication "likely requires a
training objective that optimizes receiver-side causal use, not only sender-to-receiver
representational fit". ``causal_replace`` and ``causal_additive`` inject exactly as ``replace``
and ``additive`` do, with the same affine map trained through the frozen receiver on its
answer loss (``harness.model.causal``, the protocol's ``[causal]`` recipe). The threshold is
the paper's (a paired CI pooled over seeds entirely above zero), corrected for multiplicity:
the four "beats" claims are one family of hypotheses, each naming its condition and
baseline in advance (no best-of selection), so each uses a Bonferroni 1 - 0.05 / 4 = 98.75%
CI (family-wise 5%). Each reports the smallest effect it could detect, so a non-replication
reads with its power: (z_{1-0.05/8} + z_0.8) x SE, 80% power at that level with SE the pooled
one from the 95% CI's width, and never below z^2 / (n + z^2) (a mean change d of 0/1
outcomes moves at least a fraction d of the n pairs, so SE >= sqrt(d (1 - d) / n)). The
cosine claims are sign tests over 3 seeds with a margin: each seed must fall below the
linear map by more than ``COSINE_MARGIN``, so the smallest gap they detect is the margin on
every seed (reported with the per-seed gaps). The
paper's artifact has no such runs, so the ``paper`` source skips these; outcomes on the
other sources are reported as they are (pass, or a strict xfail with the numbers in
``claims/findings.toml``).
"""

from __future__ import annotations

import statistics

import pytest

from claims._util import ci, ci_values, cmp
from harness.analysis.stats import label_seed, percentile_bootstrap_ci
from harness.analysis.tables import paired_deltas
from harness.sources import Source

CAUSAL = ("causal_replace", "causal_additive")


def _need_causal(source: Source, condition: str) -> None:
    if condition not in source.summary:
        pytest.skip(
            f"{source.name} has no {condition} runs: the causal translator is an extension "
            "beyond the paper (run it with `python -m harness run`, or use the mini source)"
        )


# The family of "beats" hypotheses below (2 conditions x 2 baselines) and its corrected level.
FAMILY = 4
FAMILY_CONFIDENCE = 1 - 0.05 / FAMILY
# Cosine margin of the sign test: the largest cross-machine spread of a causal map's held-out
# normalised cosine (docs/portability.md: 0.12 for causal_replace): a seed whose causal cosine
# is below the linear one by less could be above it on another machine, so it is no evidence.
COSINE_MARGIN = 0.12


def _beats(source: Source, condition: str, baseline: str, measured) -> None:
    _need_causal(source, condition)
    row = cmp(source, condition, baseline)
    deltas, _ = paired_deltas(source.results, condition, baseline)
    low, high = percentile_bootstrap_ci(
        deltas,
        resamples=source.protocol.stats.bootstrap_resamples,
        confidence=FAMILY_CONFIDENCE,
        seed=label_seed(condition, baseline, "family"),
    )
    nd = statistics.NormalDist()
    se = (row.ci_high - row.ci_low) / (2 * nd.inv_cdf(0.975))
    z = nd.inv_cdf(1 - 0.05 / (2 * FAMILY)) + nd.inv_cdf(0.8)
    detectable = max(z * se, z * z / (row.n_pairs + z * z))
    msg = measured(
        f"{ci(row)}; {FAMILY_CONFIDENCE:.2%} CI [{low * 100:+.2f}, {high * 100:+.2f}] pp "
        f"(Bonferroni over {FAMILY}); smallest detectable gain {detectable * 100:.2f} pp",
        **ci_values(row),
        detectable=detectable,
    )
    assert low > 0, msg


def _cosines_below_linear(source: Source, condition: str, measured) -> None:
    _need_causal(source, condition)
    linear = {t["seed"]: t["normalized_cosine"] for t in source.translator_metrics()}
    causal = {t["seed"]: t["normalized_cosine"] for t in source.translator_metrics(condition)}
    assert causal and set(causal) <= set(linear), (causal, linear)
    pairs = {s: (round(causal[s], 4), round(linear[s], 4)) for s in sorted(causal)}
    below = sum(1 for c, lin in pairs.values() if c < lin)
    clear = sum(1 for s in causal if causal[s] < linear[s] - COSINE_MARGIN)
    smallest_gap = min(linear[s] - causal[s] for s in causal)
    msg = measured(
        f"{below} of {len(pairs)} seeds below, {clear} by more than the margin "
        f"{COSINE_MARGIN}; smallest gap (linear - causal) {smallest_gap:+.4f}, smallest "
        f"detectable gap {COSINE_MARGIN} on every seed; seed: (causal, linear) = {pairs}",
        seeds_below=below,
        seeds_below_margin=clear,
        smallest_gap=smallest_gap,
        detectable=COSINE_MARGIN,
    )
    assert clear == len(pairs), msg


def test_a_causally_trained_replace_translator_beats_no_injection(source: Source, measured) -> None:
    """Hypothesis: replacement with a translator trained on the receiver's answer loss gives a
    paired gain over no-injection (CI above zero)."""
    _beats(source, "causal_replace", "no_inject", measured)


def test_a_causally_trained_additive_translator_beats_no_injection(
    source: Source, measured
) -> None:
    """Hypothesis: additive injection of a causally trained translator gives a paired gain over
    no-injection (CI above zero)."""
    _beats(source, "causal_additive", "no_inject", measured)


def test_a_causally_trained_replace_translator_beats_natural_language_relay(
    source: Source, measured
) -> None:
    """Hypothesis: causally trained replacement beats natural-language relay (CI above zero)."""
    _beats(source, "causal_replace", "nl_relay", measured)


def test_a_causally_trained_additive_translator_beats_natural_language_relay(
    source: Source, measured
) -> None:
    """Hypothesis: causally trained additive injection beats natural-language relay (CI above
    zero)."""
    _beats(source, "causal_additive", "nl_relay", measured)


def test_causal_replace_translator_has_lower_offline_cosine_than_the_linear_one(
    source: Source, measured
) -> None:
    """Hypothesis: usability and alignment diverge -- on every seed the causally trained
    (replace) map's held-out normalised cosine is below the linear translator's, on the same
    held-out tokens, by more than ``COSINE_MARGIN`` (3 seeds below with no margin would be a
    sign test of p = 1/8 at best, and a gap inside the cross-machine spread is no gap)."""
    _cosines_below_linear(source, "causal_replace", measured)


def test_causal_additive_translator_has_lower_offline_cosine_than_the_linear_one(
    source: Source, measured
) -> None:
    """Hypothesis: as above for the map trained for additive injection (same margin)."""
    _cosines_below_linear(source, "causal_additive", measured)
