"""Beyond the paper -- the opposite result, tested as its authors define it (issue #28).

Ramesh & Li, "Communicating Activations Between Language Model Agents" (ICML 2025, arXiv
2501.14082). Their method (Section 3): only B's last-token state after layer j changes, to
f(W a, b), with a A's last-token state after layer k, f = sum, mean or replace, W a
task-agnostic linear map fitted by MSE on the **raw** final-token states of both models reading
the same texts (so W a has B's scale), and (k, j) chosen from a full layer grid. Without W,
for differing widths, the last min(d_A, d_B) coordinates are combined (a footnote of Section
3). Their coordination games (Section 4.1) give A the facts and B only the question; their
identical-model runs use no map. Here (``harness.run.ramesh_li``): ``rl_map_*`` (their W,
least squares on 1024 generated texts disjoint from the eval and the translator-training
split; the identity where the sender is the receiver), ``rl_coords_*`` (the map-free combine),
each at the (k, j) its layer search chose on the translator-training split, never on the eval.

Multiplicity: their headline f, **replace**, is named in advance; every claim of a transfer
tests ``rl_map_replace`` (or, for the map-free combine, ``rl_coords_replace``) alone, and the
other f enter only the ordering claim, whose four comparisons must all hold (an
intersection-union test: no correction is needed for a conjunction). Both maps are
deterministic, so each condition is one file (396 pairs against a baseline, not a pooled
3 x 396 of identical runs). Every claim states its smallest detectable effect, so a
non-replication (a negative claim, or a transfer that does not show) reads with its power:
the paired delta the bootstrap CI resolves with 80% power at the 5% level, z x SE with
z = z_0.975 + z_0.8 and SE from the 95% CI's width, and never below z^2 / (n + z^2) (a mean
change d of 0/1 outcomes moves at least a fraction d of the n rows, so its SE is at least
sqrt(d (1 - d) / n): a condition that changes no answer, zero-width CI, still has a
detectable effect). Thresholds: a paired 95% CI above zero (a
transfer), upper bound not below zero (not destructive), as in the rest of the suite.
"""

from __future__ import annotations

import math

import pytest

from claims._util import ci, ci_values, cmp, mean_sample_field, need
from harness.analysis.results import ResultSet
from harness.analysis.tables import ComparisonRow, compare
from harness.sources import Source
from harness.spec.jobs import left_out

REPLACE = "rl_map_replace"  # their headline f, named in advance
SUM, MEAN = "rl_map_sum", "rl_map_mean"
COORDS_REPLACE = "rl_coords_replace"
_Z = 1.959964 + 0.841621  # z_0.975 + z_0.8


def _need_rl(source: Source, *conditions: str) -> None:
    if not any(c in source.summary for c in conditions if c.startswith("rl_")):
        reasons = left_out(source.protocol)
        if any(c in reasons for c in conditions):
            pytest.skip(f"{source.name}: " + next(reasons[c] for c in conditions if c in reasons))
        pytest.skip(
            f"{source.name} has no Ramesh & Li runs ({', '.join(conditions)}): an extension "
            "beyond the paper that needs the pair's weights and [translator] texts (the mini "
            "sources run it)"
        )
    need(source, *conditions)


def _withheld(source: Source) -> bool:
    return "{context}" not in source.protocol.prompt.receiver_template


def _same_model(source: Source) -> bool:
    return source.protocol.translator.method == "identity"


def _mde(row: ComparisonRow) -> float:
    """The smallest paired effect the CI resolves with 80% power (proportion; the module
    docstring derives it)."""
    se = (row.ci_high - row.ci_low) / (2 * 1.959964)
    return max(_Z * se, _Z * _Z / (row.n_pairs + _Z * _Z))


def _pair(source: Source, condition: str, baseline: str) -> ComparisonRow:
    """Paired comparison of two conditions' runs (fwd), as the suite's rows are computed."""
    need(source, condition, baseline)
    runs = [*source.results.runs(condition, "fwd"), *source.results.runs(baseline, "fwd")]
    rows = compare(
        ResultSet(runs), baselines=(baseline,), stats=source.protocol.stats, directions=("fwd",)
    )
    (row,) = [r for r in rows if r.condition == condition]
    return row


def _layers(source: Source, condition: str) -> str:
    f = source.results.runs(condition, "fwd")[0]
    return f"k={f.models['layer_a']}, j={f.models['layer_b']}"


def _independent_withheld(source: Source) -> None:
    if not _withheld(source):
        pytest.skip(
            f"{source.name} is not a withheld-regime source (the receiver sees the context)"
        )
    if _same_model(source):
        pytest.skip(f"{source.name} runs the identical-model setting (see the ordering claim)")


def _assert_beats_withheld(source: Source, measured, condition: str, baseline: str) -> None:
    """Between independent models with the context withheld: ``condition``'s paired 95% CI
    vs ``baseline`` lies above zero (the message names the searched layers)."""
    _independent_withheld(source)
    _need_rl(source, condition, baseline)
    row = cmp(source, condition, baseline)
    msg = measured(
        f"{ci(row)}; smallest detectable gain {_mde(row) * 100:.2f} pp; "
        f"{_layers(source, condition)}",
        **ci_values(row),
        detectable=_mde(row),
    )
    assert row.ci_low > 0, msg


def test_their_replace_with_w_beats_no_injection_in_the_withheld_regime(
    source: Source, measured
) -> None:
    """Ramesh & Li, Section 4.1: in the coordination games, activation communication beats
    B alone -- with the context withheld from the receiver, ``rl_map_replace`` (their W, their
    searched layers) has a paired 95% CI vs no-injection above zero."""
    _assert_beats_withheld(source, measured, REPLACE, "no_inject")


def test_their_replace_with_w_beats_the_natural_language_relay_in_the_withheld_regime(
    source: Source, measured
) -> None:
    """Ramesh & Li, Sections 4.1-4.2: activation communication outperforms natural-language
    communication -- with the context withheld, ``rl_map_replace``'s paired 95% CI vs the
    relay lies above zero."""
    _assert_beats_withheld(source, measured, REPLACE, "nl_relay")


def test_their_replace_with_w_is_not_destructive_in_the_withheld_regime(
    source: Source, measured
) -> None:
    """Ramesh & Li, Section 3: f changes one position and the receiver's own computation goes
    on -- with the context withheld, ``rl_map_replace``'s paired CI vs no-injection does not
    lie entirely below zero (the message states the smallest detectable effect)."""
    _independent_withheld(source)
    _need_rl(source, REPLACE, "no_inject")
    row = cmp(source, REPLACE, "no_inject")
    msg = measured(
        f"{ci(row)}; smallest detectable effect {_mde(row) * 100:.2f} pp",
        **ci_values(row),
        detectable=_mde(row),
    )
    assert row.ci_high >= 0, msg


def test_their_replace_with_w_keeps_the_answer_of_a_receiver_that_reads_the_context(
    source: Source, measured
) -> None:
    """Ramesh & Li, Section 3, where the receiver already has the answer (shared context,
    the negative-result paper's regime): replacing only its last-token state with W a, at
    their searched layers, is not destructive -- ``rl_map_replace``'s paired CI vs
    no-injection does not lie entirely below zero (the message states the smallest detectable
    effect)."""
    if _withheld(source):
        pytest.skip(f"{source.name} withholds the context (see the withheld-regime claims)")
    _need_rl(source, REPLACE, "no_inject")
    row = cmp(source, REPLACE, "no_inject")
    msg = measured(
        f"shared context: {ci(row)}; smallest detectable effect {_mde(row) * 100:.2f} pp; "
        f"{_layers(source, REPLACE)}",
        **ci_values(row),
        detectable=_mde(row),
    )
    assert row.ci_high >= 0, msg


def test_the_identical_model_setting_replicates_their_section_4_1_ordering(
    source: Source, measured
) -> None:
    """Ramesh & Li, Section 4.1 (the same model as A and B, no map, the context withheld
    from B): replace > sum and replace > mean, and sum, mean > no communication -- all four
    paired 95% CIs above zero (a conjunction: each tested at 5%). Runs on the identical-model
    source (``mini-control``: the mini receiver as its own sender, identity map)."""
    if not _same_model(source):
        pytest.skip(f"{source.name} is not the identical-model setting (its map is fitted)")
    _need_rl(source, REPLACE, SUM, MEAN, "no_inject")
    rows = [
        _pair(source, REPLACE, SUM),
        _pair(source, REPLACE, MEAN),
        cmp(source, SUM, "no_inject"),
        cmp(source, MEAN, "no_inject"),
    ]
    worst = min(rows, key=lambda r: r.ci_low)
    numbers = {f"{r.condition}_vs_{r.baseline}_ci_low": r.ci_low for r in rows}
    detectable = max(_mde(r) for r in rows)
    msg = measured(
        "; ".join(ci(r) for r in rows)
        + f"; smallest detectable difference {detectable * 100:.2f} pp (the largest of the "
        f"four); {_layers(source, REPLACE)}",
        **numbers,
        detectable=detectable,
    )
    assert worst.ci_low > 0, msg


def test_the_map_free_coordinate_combine_beats_no_injection_between_independent_models(
    source: Source, measured
) -> None:
    """Ramesh & Li, Section 3 (footnote on differing widths): without W, combining the last
    min(d_A, d_B) coordinates, their main cross-width condition -- with the context withheld,
    ``rl_coords_replace`` (replace named in advance) between the independently trained mini
    models has a paired 95% CI vs no-injection above zero."""
    _assert_beats_withheld(source, measured, COORDS_REPLACE, "no_inject")


def test_their_map_injects_at_the_receivers_native_scale(source: Source, measured) -> None:
    """Ramesh & Li, Section 3: W is fitted on raw activations, so W a has B's scale -- on
    the eval, the mean norm of the injected W a is within half an order of magnitude of the
    native last-token norm it replaces (|log10 ratio| < 0.5; the normalised translator T of
    the negative-result paper is ~10^2.5 off on the mini pair). The held-out raw R2 and
    cosine of W on its texts are reported."""
    _need_rl(source, REPLACE)
    injected = mean_sample_field(source, REPLACE, "translated_norm_mean")
    native = mean_sample_field(source, REPLACE, "b_hidden_norm_mean")
    fit = source.results.runs(REPLACE, "fwd")[0].raw["ramesh_li"]["map"]
    ratio = injected / native
    msg = measured(
        f"W a {injected:.2f} vs native {native:.2f} (ratio {ratio:.3f}, 10^"
        f"{math.log10(ratio):+.2f}); held-out raw R2 {fit['raw_r2']:.4f}, cosine "
        f"{fit['raw_cosine']:.4f} ({fit['method']}); {_layers(source, REPLACE)}",
        log10_ratio=math.log10(ratio),
        raw_r2=fit["raw_r2"],
    )
    assert abs(math.log10(ratio)) < 0.5, msg
