"""Section 4.2 -- Failure analysis: norm mismatch is real but minor; direction error dominates."""

from __future__ import annotations

import math

from claims._util import ci, cmp, mean_sample_field, need
from harness.sources import Source


def _norms(source: Source) -> tuple[float, float]:
    need(source, "replace")
    translated = mean_sample_field(source, "replace", "translated_norm_mean")
    native = mean_sample_field(source, "replace", "b_hidden_norm_mean")
    return translated, native


def test_uncorrected_translated_vectors_have_norm_around_0_85_against_native_68_70(
    source: Source, measured
) -> None:
    """ "Uncorrected replacement inserts translated vectors with mean norm around 0.85 where the
    receiver's native hidden-state norm is about 68.70." (Section 4.2; around / about: equal at
    the stated precision, 2 decimals, i.e. within 0.005 of each value.) Tightened from the
    earlier reading (within 10%, which let a native norm of 62 or 75 pass): the paper states
    both numbers as the artifact's means rounded to 2 decimals (0.8507 and 68.6985), so
    "about" says the text rounds, not that any value near it will do."""
    translated, native = _norms(source)
    msg = measured(
        f"translated {translated:.4f}, native {native:.4f} (ratio {native / translated:.1f}x)",
        translated=translated,
        native=native,
    )
    assert abs(translated - 0.85) < 0.005 and abs(native - 68.70) < 0.005, msg


def test_replacement_inserts_the_translators_output(source: Source, measured) -> None:
    """ "Uncorrected replacement inserts translated vectors" (Section 4.2): in every row of
    every replacement file the recorded inserted norm is the translated norm (within 0.1%:
    the two are norms of the same vector, computed before and after the hook's dtype cast)."""
    need(source, "replace")
    bad, worst = [], 0.0
    for f in source.results:
        if f.condition != "replace":
            continue
        for r in f.per_sample:
            inj, tr = r.get("injected_norm_mean"), r.get("translated_norm_mean")
            if not (isinstance(inj, (int, float)) and isinstance(tr, (int, float)) and tr > 0):
                bad.append(f"{f.name}#{r.get('idx')}: injected {inj}, translated {tr}")
                continue
            worst = max(worst, abs(inj / tr - 1))
            if abs(inj / tr - 1) > 1e-3:
                bad.append(f"{f.name}#{r['idx']}: injected {inj:.4f}, translated {tr:.4f}")
    msg = measured(
        f"inserted = translated in every row within {worst:.1e}; mean inserted "
        f"{mean_sample_field(source, 'replace', 'injected_norm_mean'):.4f}",
        worst=worst,
    )
    assert not bad, f"{msg}; {len(bad)} rows differ: {bad[:4]}"


def test_the_norm_gap_is_roughly_two_orders_of_magnitude(source: Source, measured) -> None:
    """ "a large L2-norm gap -- here roughly two orders of magnitude between the translated
    vector and the receiver's native hidden state" (Section 5; roughly two orders: the ratio
    rounds to 10^2 on a log scale, i.e. lies between 10^1.5 and 10^2.5)"""
    translated, native = _norms(source)
    ratio = native / translated
    msg = measured(
        f"native {native:.2f} / translated {translated:.3f} = {ratio:.1f}x "
        f"(10^{math.log10(ratio):.2f})",
        ratio=ratio,
    )
    assert 10**1.5 <= ratio <= 10**2.5, msg


def test_scale_correction_gives_injected_vectors_the_native_norm(source: Source, measured) -> None:
    """ "Scale correction removes this simple mismatch but does not recover baseline behavior."
    (Figure 5) -- injected norms equal native norms within 1%."""
    need(source, "scale_corrected")
    injected = mean_sample_field(source, "scale_corrected", "injected_norm_mean")
    native = mean_sample_field(source, "scale_corrected", "b_hidden_norm_mean")
    msg = measured(
        f"injected {injected:.3f} vs native {native:.3f} ({injected / native - 1:+.2%})",
        injected=injected,
        native=native,
    )
    assert abs(injected - native) <= 0.01 * native, msg


def test_scale_corrected_replacement_remains_far_below_both_baselines(
    source: Source, measured
) -> None:
    """ "Scale-corrected replacement remains far below baseline, so norm mismatch is not the
    whole explanation." (far below: against no-injection and the relay, the paired CI's
    upper bound lies below minus half the baseline's accuracy, so with 95% confidence more
    than half of either baseline is lost.) Tightened from the earlier reading (CI below zero
    and the point estimate under half): the half is the boundary of "most of it is lost",
    and now the interval, not only the mean, must clear it."""
    rows = [cmp(source, "scale_corrected", b) for b in ("no_inject", "nl_relay")]
    kept = [source.wb("scale_corrected") / source.wb(r.baseline) for r in rows]
    msg = measured(
        "; ".join(
            f"{ci(r)}, keeps {k:.0%} (upper bound {r.ci_high / source.wb(r.baseline):+.0%} of "
            "the baseline)"
            for r, k in zip(rows, kept, strict=True)
        ),
        delta_no_inject=rows[0].delta,
        delta_nl_relay=rows[1].delta,
    )
    assert all(r.ci_high < -0.5 * source.wb(r.baseline) for r in rows), msg


def test_scale_corrected_gap_to_no_injection_exceeds_eight_points(source: Source, measured) -> None:
    """ "The latter gap -- over eight percentage points of word-boundary accuracy -- persists
    after the norm correction." """
    need(source, "scale_corrected", "no_inject")
    gap = source.wb("no_inject") - source.wb("scale_corrected")
    msg = measured(f"no_inject - scale_corrected = {gap * 100:.2f} pp", gap=gap)
    assert gap > 0.08, msg


def test_norm_gap_is_the_minor_factor(source: Source, measured) -> None:
    """ "The gap between uncorrected and scale-corrected replacement quantifies the contribution
    of L2-norm mismatch, which is small relative to the gap between scale-corrected
    replacement and no-injection." (small: under a quarter of it)"""
    need(source, "replace", "scale_corrected", "no_inject")
    norm_gap = abs(source.wb("scale_corrected") - source.wb("replace"))
    direction_gap = source.wb("no_inject") - source.wb("scale_corrected")
    msg = measured(
        f"norm gap {norm_gap * 100:.2f} pp vs direction gap {direction_gap * 100:.2f} pp",
        norm_gap=norm_gap,
        direction_gap=direction_gap,
    )
    assert direction_gap > 0 and norm_gap < 0.25 * direction_gap, msg


def test_best_alpha_blend_falls_roughly_halfway_between_floor_and_baseline(
    source: Source, measured
) -> None:
    """ "The best-alpha blend partially substitutes the translated state and falls roughly
    halfway between baseline and the strong-replacement floor." (roughly halfway: the position
    rounds to 1/2 among the simple fractions 0, 1/3, 1/2, 2/3 and 1, i.e. lies in
    [5/12, 7/12].) Tightened from 25%-75%, which also admitted a blend a quarter of the way
    (closer to "a third" than to "half")."""
    need(source, "best_alpha", "scale_corrected", "no_inject")
    floor, base, mid = source.wb("scale_corrected"), source.wb("no_inject"), source.wb("best_alpha")
    position = (mid - floor) / (base - floor) if base != floor else float("nan")
    msg = measured(
        f"floor {floor * 100:.2f}%, best_alpha {mid * 100:.2f}%, baseline {base * 100:.2f}% "
        f"-> {position:.2f} of the way",
        position=position,
    )
    assert 5 / 12 <= position <= 7 / 12, msg


def test_additive_injection_leaves_the_residual_stream_nearly_intact(
    source: Source, measured
) -> None:
    """ "Additive injection leaves the residual stream nearly intact and tracks the
    no-injection baseline" -- the added vector is under 1% of the native norm."""
    need(source, "additive")
    injected = mean_sample_field(source, "additive", "injected_norm_mean")
    native = mean_sample_field(source, "additive", "b_hidden_norm_mean")
    msg = measured(
        f"added {injected:.4f} vs native {native:.2f} ({injected / native:.3%})",
        share=injected / native,
    )
    assert injected < 0.01 * native, msg
