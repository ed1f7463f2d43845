from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from harness.analysis.stats import label_seed, mcnemar_exact, percentile_bootstrap_ci, tost_paired
from tests.strategies import deltas


def test_bootstrap_agrees_with_scipy_percentile_bootstrap() -> None:
    rng = np.random.default_rng(7)
    x = rng.choice([-1.0, 0.0, 1.0], p=[0.03, 0.93, 0.04], size=1188)
    ours = percentile_bootstrap_ci(x, resamples=5000, seed=1)
    ref = sps.bootstrap(
        (x,), np.mean, method="percentile", n_resamples=5000, rng=np.random.default_rng(2)
    )
    assert ours[0] == pytest.approx(ref.confidence_interval.low, abs=0.003)
    assert ours[1] == pytest.approx(ref.confidence_interval.high, abs=0.003)


@settings(max_examples=40)
@given(deltas)
def test_bootstrap_ci_brackets_the_mean(xs: list[float]) -> None:
    low, high = percentile_bootstrap_ci(xs, resamples=1000, seed=3)
    assert low <= float(np.mean(xs)) + 1e-12 and float(np.mean(xs)) - 1e-12 <= high


@given(st.sampled_from([-1.0, 0.0, 1.0]), st.integers(1, 500))
def test_identical_inputs_give_a_zero_width_ci(value: float, n: int) -> None:
    assert percentile_bootstrap_ci([value] * n, resamples=200, seed=0) == (value, value)


@settings(max_examples=30)
@given(deltas, st.integers(0, 2**32 - 1))
def test_same_seed_gives_the_same_ci(xs: list[float], seed: int) -> None:
    assert percentile_bootstrap_ci(xs, resamples=300, seed=seed) == percentile_bootstrap_ci(
        xs, resamples=300, seed=seed
    )


def test_bootstrap_rejects_empty_and_nan() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        percentile_bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN"):
        percentile_bootstrap_ci([0.0, float("nan")])


def test_label_seed_is_stable_and_label_dependent() -> None:
    assert label_seed("additive", "no_inject") == label_seed("additive", "no_inject")
    assert label_seed("additive", "no_inject") != label_seed("additive", "nl_relay")
    # pinned to SHA-256("a") = ca978112...: must not depend on PYTHONHASHSEED or the process
    assert label_seed("a") == 0xCA978112


def test_mcnemar_exact_matches_the_binomial_definition() -> None:
    assert mcnemar_exact(0, 10) == pytest.approx(2 * 0.5**10)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0


@given(st.integers(0, 200), st.integers(0, 200))
def test_mcnemar_is_symmetric_and_a_probability(gained: int, lost: int) -> None:
    p = mcnemar_exact(gained, lost)
    assert 0.0 <= p <= 1.0 and p == mcnemar_exact(lost, gained)


def test_tost_supports_equivalence_only_for_small_deltas() -> None:
    rng = np.random.default_rng(0)
    near_zero = rng.choice([-1.0, 0.0, 1.0], p=[0.02, 0.96, 0.02], size=2000)
    shifted = rng.choice([-1.0, 0.0, 1.0], p=[0.10, 0.90, 0.0], size=2000)
    assert tost_paired(near_zero, -0.02, 0.02) < 0.05
    assert tost_paired(shifted, -0.02, 0.02) > 0.5
    assert tost_paired([0.0] * 10, -0.02, 0.02) == 0.0
    assert tost_paired([0.5] * 10, -0.02, 0.02) == 1.0
    with pytest.raises(ValueError):
        tost_paired([0.0, 1.0], 0.1, -0.1)


def test_holm_matches_the_step_down_definition() -> None:
    from harness.analysis.stats import holm

    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04): given order kept
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    # Holm rejects more than Bonferroni where the second p-value is between alpha/3, alpha/2
    adjusted = holm([0.001, 0.02, 0.5])
    assert adjusted[1] == pytest.approx(0.04) and 3 * 0.02 > 0.05
    with pytest.raises(ValueError, match="at least one"):
        holm([])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])


def test_bootstrap_p_agrees_with_the_ci_from_the_same_draws() -> None:
    from harness.analysis.stats import percentile_bootstrap_p

    rng = np.random.default_rng(11)
    for gain in (0.0, 0.02, 0.05):
        x = rng.choice([-1.0, 0.0, 1.0], p=[0.05, 0.9 - gain, 0.05 + gain], size=396)
        p = percentile_bootstrap_p(x, alternative="greater", resamples=2000, seed=5)
        for level in (0.9, 0.95, 0.99):
            low, _ = percentile_bootstrap_ci(x, resamples=2000, confidence=level, seed=5)
            tail = (1 - level) / 2
            if abs(p - tail) > 2 / 2000:  # away from the interpolation boundary
                assert (low > 0) == (p < tail), (gain, level, low, p)
        two = percentile_bootstrap_p(x, resamples=2000, seed=5)
        less = percentile_bootstrap_p(x, alternative="less", resamples=2000, seed=5)
        assert two == pytest.approx(min(1.0, 2 * min(p, less)))
    assert percentile_bootstrap_p([0.0] * 50, alternative="greater", resamples=100) == 1.0
    assert percentile_bootstrap_p([1.0] * 50, alternative="greater", resamples=100) == 0.0
    with pytest.raises(ValueError, match="alternative"):
        percentile_bootstrap_p([1.0], alternative="bigger")
