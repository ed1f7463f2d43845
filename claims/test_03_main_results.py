"""Section 4.1 -- Main results: activation transfer gives no stable downstream gain."""

from __future__ import annotations

import statistics

from claims._stated import (
    at4,
    comparison_problems,
    mean_problem,
    run_accuracies,
    stated_kind,
    tables,
)
from claims._util import (
    REPLACEMENT_STYLE,
    TRANSFER_CONDITIONS,
    ci,
    ci_values,
    cmp,
    need,
    per_seed,
    pp,
)
from harness.analysis.metrics import PRIMARY_METRIC
from harness.analysis.published import bonferroni_z
from harness.conditions import get_condition
from harness.sources import Source


def test_additive_injection_ci_versus_no_injection_crosses_zero(source: Source, measured) -> None:
    """ "Relative to no-injection, additive has mean word-boundary delta +0.0042 with pooled
    95% CI [-0.0042, +0.0126]. [...] Both intervals cross zero." """
    row = cmp(source, "additive", "no_inject")
    msg = measured(ci(row), **ci_values(row))
    assert row.crosses_zero, msg


def test_additive_injection_has_a_small_positive_mean_versus_no_injection(
    source: Source, measured
) -> None:
    """ "Additive injection has a small positive mean but its pooled bootstrap confidence
    interval crosses zero." (Figure 3 caption; small: under 2 pp, the protocol's equivalence
    margin, as the paper's +0.42 pp is)"""
    row = cmp(source, "additive", "no_inject")
    msg = measured(ci(row), **ci_values(row))
    assert 0 < row.delta < 0.02, msg


def test_additive_injection_ci_versus_natural_language_relay_crosses_zero(
    source: Source, measured
) -> None:
    """ "Relative to natural-language relay, additive has mean delta +0.0093 with pooled 95% CI
    [-0.0126, +0.0311]. Both intervals cross zero." """
    row = cmp(source, "additive", "nl_relay")
    msg = measured(f"{ci(row)}; {_baselines(source)}", **ci_values(row))
    assert row.crosses_zero, msg


def test_additive_injection_has_the_highest_accuracy_among_transfer_conditions(
    source: Source, measured
) -> None:
    """ "Additive injection has the highest mean word-boundary containment among
    activation-transfer conditions (0.0926)." (Table 1 caption)"""
    need(source, *TRANSFER_CONDITIONS)
    accs = {c: source.wb(c) for c in TRANSFER_CONDITIONS}
    best = max(accs, key=accs.__getitem__)
    runner_up = max(v for c, v in accs.items() if c != "additive")
    msg = measured(
        f"additive {accs['additive'] * 100:.2f}%, best other {runner_up * 100:.2f}% "
        f"(highest: {best})",
        additive=accs["additive"],
    )
    assert best == "additive", f"{msg}; { ({c: round(v, 4) for c, v in accs.items()}) }"


def _baselines(source: Source) -> str:
    return (
        f"relay {source.wb('nl_relay') * 100:.2f}%, "
        f"no-injection {source.wb('no_inject') * 100:.2f}%"
    )


def _stably_above(source: Source, baseline: str) -> tuple[list[str], float]:
    """Transfer conditions whose paired CI against ``baseline`` lies entirely above zero, and
    the highest lower CI bound among them all."""
    need(source, baseline, *TRANSFER_CONDITIONS)
    rows = [cmp(source, c, baseline) for c in TRANSFER_CONDITIONS]
    return [ci(r) for r in rows if r.ci_low > 0], max(r.ci_low for r in rows)


def test_no_transfer_condition_stably_beats_natural_language_relay(
    source: Source, measured
) -> None:
    """ "The activation-transfer conditions do not provide a stable improvement over the text
    communication baseline." (Figure 4) -- no paired CI vs relay lies above zero."""
    above, top = _stably_above(source, "nl_relay")
    msg = measured(
        f"highest lower CI bound {pp(top)}; above zero: {above or 'none'}; {_baselines(source)}",
        top_ci_low=top,
    )
    assert not above, msg


def test_no_transfer_condition_stably_beats_no_injection(source: Source, measured) -> None:
    """ "The tested activation-transfer mechanism does not outperform either no-injection or
    natural-language relay" (Section 1) -- no paired CI vs no-injection lies above zero."""
    above, top = _stably_above(source, "no_inject")
    msg = measured(
        f"highest lower CI bound {pp(top)}; above zero: {above or 'none'}", top_ci_low=top
    )
    assert not above, msg


def test_replacement_is_destructive_versus_no_injection(source: Source, measured) -> None:
    """ "Replacement-style conditions are negative with intervals below zero." (Figure 3);
    replacement has delta -0.0859 versus no-injection."""
    row = cmp(source, "replace", "no_inject")
    msg = measured(ci(row), **ci_values(row))
    assert row.ci_high < 0, msg


def test_replacement_is_destructive_versus_natural_language_relay(source: Source, measured) -> None:
    """ "By contrast, replacement has delta -0.0859 versus no-injection and -0.0808 versus
    natural-language relay." """
    row = cmp(source, "replace", "nl_relay")
    msg = measured(ci(row), **ci_values(row))
    assert row.ci_high < 0, msg


def test_replacement_style_injection_is_destructive_on_every_seed(source: Source, measured) -> None:
    """ "Replacement-style injection is consistently destructive" (abstract) -- for replace,
    scale-corrected and both shuffles, every seed's own paired CI vs no-injection lies below
    zero, not only the pooled one."""
    need(source, *REPLACEMENT_STYLE, "no_inject")
    worst = None
    bad = []
    for cond in REPLACEMENT_STYLE:
        for run, row in per_seed(source, cond, "no_inject"):
            if worst is None or row.ci_high > worst[1].ci_high:
                worst = (run, row)
            if row.ci_high >= 0:
                bad.append(f"{run.label}: {ci(row)}")
    assert worst is not None
    msg = measured(
        f"{sum(len(source.results.runs(c)) for c in REPLACEMENT_STYLE)} seed runs; highest "
        f"upper CI bound {pp(worst[1].ci_high)} ({worst[0].label})",
        worst_ci_high=worst[1].ci_high,
    )
    assert not bad, f"{msg}; not below zero: {bad}"


STRONGLY_BELOW = ("replace", "scale_corrected", "same_norm_random", "shuffled_translation")


def test_replacement_random_and_shuffled_conditions_are_strongly_below_both_baselines(
    source: Source, measured
) -> None:
    """ "Replacement, scale-corrected replacement, same-norm random injection, and shuffled
    translation are all strongly below no-injection and natural-language relay." (Section 4.1;
    strongly: the paired CI's upper bound lies below minus half the baseline's accuracy, so
    with 95% confidence more than half of the baseline is lost.) Tightened from the earlier
    reading (CI below zero and the point estimate keeping under half): half is the boundary
    of "most of it lost", and now the interval, not only the mean, must clear it."""
    need(source, *STRONGLY_BELOW, "no_inject", "nl_relay")
    bad, kept = [], {}
    for cond in STRONGLY_BELOW:
        for base in ("no_inject", "nl_relay"):
            row = cmp(source, cond, base)
            share = source.wb(cond) / source.wb(base) if source.wb(base) else float("inf")
            kept[(cond, base)] = share
            if row.ci_high >= -0.5 * source.wb(base):
                bad.append(f"{ci(row)}, keeps {share:.0%}")
    top = max(kept, key=kept.__getitem__)
    msg = measured(
        f"at most {kept[top]:.0%} of a baseline kept ({top[0]} {source.wb(top[0]) * 100:.2f}% "
        f"vs {top[1]} {source.wb(top[1]) * 100:.2f}%)",
        max_share_kept=kept[top],
    )
    assert not bad, f"{msg}; {bad}"


def test_normalized_exact_match_is_zero_for_every_condition(source: Source, measured) -> None:
    """ "Normalized exact match is zero for every condition and is omitted from the compact
    table." (Table 1 caption)"""
    vals = {
        c: r.means["normalized_exact_match"]
        for c, r in source.summary.items()
        if get_condition(c).group != "extension"  # the paper's conditions only
    }
    nonzero = {c: round(v, 4) for c, v in vals.items() if v != 0.0}
    msg = measured(
        f"max {max(vals.values()):.4f} over {len(vals)} conditions"
        + (f"; nonzero {nonzero}" if nonzero else ""),
        max_normalized_exact_match=max(vals.values()),
    )
    assert not nonzero, msg


def test_pooled_paired_deltas_number_seeds_times_samples(source: Source, measured) -> None:
    """ "For three-seed full-n conditions, this yields 1188 paired deltas; for the strict
    matched shuffled control, it yields 1149 paired deltas." (Section 3.4)"""
    need(source, "additive", "shuffled_translation_strict_matched", "no_inject")
    seeds = len(source.protocol.run.seeds)
    full = cmp(source, "additive", "no_inject").n_pairs
    strict = cmp(source, "shuffled_translation_strict_matched", "no_inject").n_pairs
    want = (seeds * source.protocol.eval.n, seeds * source.protocol.eval.strict_n)
    msg = measured(f"{full} full-n, {strict} strict pairs (expected {want[0]}, {want[1]})")
    assert (full, strict) == want, msg


# -- the numbers Section 4.1 and Table 1 state (issue #27, item 1; claims/_stated.py) --------
def test_table_1_means_and_standard_deviations_are_the_published_ones(
    source: Source, measured
) -> None:
    """Table 1: "Values are run means with standard deviations for multi-seed conditions."
    Every published (condition, fwd) row -- runs, n, and the mean and sample standard
    deviation over runs of exact match, normalised exact match, word-boundary containment,
    first-answer-span match and legacy containment -- at the published 4 decimals on the
    artifact. On a rerun of the paper's protocol the means lie within sampling error
    (Bonferroni over every mean of the table) and runs and n are exact; the standard
    deviations are not tested there: over 3 seeds they have 2 degrees of freedom, so a
    rerun's could lie anywhere from 0.16 to 1.9 times the published one (chi-square 95%)."""
    kind = stated_kind(source)
    pub = {c: r for (c, d), r in tables().summary.items() if d == "fwd"}
    z = bonferroni_z(sum(len(r.means) for r in pub.values()))
    bad, checked = [], 0
    for cond, p in pub.items():
        runs = source.results.runs(cond)
        if (len(runs), min((f.n for f in runs), default=0)) != (p.runs, p.n):
            bad.append(
                f"{cond}: {len(runs)} runs of n {[f.n for f in runs]}, published {p.runs} of {p.n}"
            )
            continue
        for metric, want in p.means.items():
            checked += 1
            problem = mean_problem(source, kind, cond, metric, want, z)
            if problem:
                bad.append(problem)
            accs = run_accuracies(runs, metric)
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            if kind == "published":
                checked += 1
                if at4(sd) != at4(p.stds[metric]):
                    bad.append(f"{cond} {metric} std {sd:.4f}, published {p.stds[metric]:.4f}")
    msg = measured(
        f"{checked} numbers of {len(pub)} published rows; {len(bad)} differ", differing=len(bad)
    )
    assert not bad, f"{msg}: {bad[:6]}"


def test_additive_word_boundary_accuracy_is_0_0926(source: Source, measured) -> None:
    """ "Additive injection has the highest mean word-boundary containment among
    activation-transfer conditions (0.0926)" (Table 1 caption): the text's number is the
    published table's, and the source's mean is it (artifact: at 4 decimals; rerun: within
    sampling error, z = 1.96)."""
    kind = stated_kind(source)
    need(source, "additive")
    want = tables().summary[("additive", "fwd")].means[PRIMARY_METRIC]
    problem = mean_problem(source, kind, "additive", PRIMARY_METRIC, want, bonferroni_z(1))
    msg = measured(
        f"additive {source.wb('additive'):.4f} (published {want:.4f}, text 0.0926)",
        additive=source.wb("additive"),
    )
    assert at4(want) == 0.0926, f"{msg}: the published table says {want:.4f}"
    assert problem is None, f"{msg}: {problem}"


def _stated_rows(source: Source, measured, stated: dict, *, bounds: bool = True) -> None:
    """Each (condition, baseline) -> (delta, CI low, CI high) the text states (None: not
    stated) equals the published Table 3 row at 4 decimals, and the source reproduces it."""
    kind = stated_kind(source)
    need(source, *{c for pair in stated for c in pair})
    pub = tables().comparisons
    z = bonferroni_z(len(stated))
    bad, texts = [], []
    for (cond, base), text in stated.items():
        row = cmp(source, cond, base)
        p = pub[(cond, base, PRIMARY_METRIC)]
        table = (at4(p.delta), at4(p.ci_low), at4(p.ci_high))
        if any(t is not None and t != v for t, v in zip(text, table, strict=True)):
            bad.append(f"{cond} vs {base}: the text says {text}, the table {table}")
        bad += comparison_problems(source, kind, row, p, z, bounds=bounds)
        texts.append(ci(row))
    msg = measured("; ".join(texts))
    assert not bad, f"{msg}: {bad}"


def test_additive_versus_no_injection_is_plus_0_0042_with_ci_minus_0_0042_to_plus_0_0126(
    source: Source, measured
) -> None:
    """ "Relative to no-injection, additive has mean word-boundary delta +0.0042 with pooled
    95% CI [-0.0042, +0.0126]." (Section 4.1) -- and the sign the paper states ("a small
    positive mean", Figure 3) is asserted with it."""
    _stated_rows(source, measured, {("additive", "no_inject"): (0.0042, -0.0042, 0.0126)})
    assert cmp(source, "additive", "no_inject").delta > 0


def test_additive_versus_natural_language_relay_is_plus_0_0093_with_ci_minus_0_0126_to_plus_0_0311(
    source: Source, measured
) -> None:
    """ "Relative to natural-language relay, additive has mean delta +0.0093 with pooled 95%
    CI [-0.0126, +0.0311]." (Section 4.1) -- with its positive sign."""
    _stated_rows(source, measured, {("additive", "nl_relay"): (0.0093, -0.0126, 0.0311)})
    assert cmp(source, "additive", "nl_relay").delta > 0


def test_replacement_delta_is_minus_0_0859_versus_no_injection_and_minus_0_0808_versus_relay(
    source: Source, measured
) -> None:
    """ "By contrast, replacement has delta -0.0859 versus no-injection and -0.0808 versus
    natural-language relay" (Section 4.1): the deltas only (the text states no CI), negative."""
    _stated_rows(
        source,
        measured,
        {
            ("replace", "no_inject"): (-0.0859, None, None),
            ("replace", "nl_relay"): (-0.0808, None, None),
        },
        bounds=False,
    )
    assert cmp(source, "replace", "no_inject").delta < 0 > cmp(source, "replace", "nl_relay").delta
