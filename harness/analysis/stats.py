"""Paired statistics on per-sample 0/1 outcomes: bootstrap CI and p-value, McNemar, TOST,
Holm's multiplicity correction.

Pure numpy/scipy; every random draw comes from an explicit seeded generator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

__all__ = [
    "holm",
    "label_seed",
    "mcnemar_exact",
    "percentile_bootstrap_ci",
    "percentile_bootstrap_p",
    "tost_paired",
]


def label_seed(*labels: object) -> int:
    """A reproducible 32-bit seed derived from a row's labels (stable across processes)."""
    text = "|".join(str(x) for x in labels)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def _resampled_means(
    values: Sequence[float] | np.ndarray, who: str, resamples: int, seed: int, chunk: int
) -> tuple[np.ndarray, np.ndarray]:
    """The checked sample and its ``resamples`` bootstrap means, drawn in chunks from
    ``np.random.default_rng(seed)`` (the same draws for the same arguments)."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{who} needs a non-empty 1-D sample")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{who} got NaN or inf values")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    rng = np.random.default_rng(seed)
    n = x.size
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    return x, means


def percentile_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    resamples: int = 5000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 500,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``.

    Resamples ``len(values)`` items with replacement ``resamples`` times from
    ``np.random.default_rng(seed)``; the interval is the (1-c)/2 and (1+c)/2 percentiles of
    the resampled means. Not BCa (as in the paper).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    x, means = _resampled_means(values, "percentile_bootstrap_ci", resamples, seed, chunk)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    # Guard float noise so a constant sample gives an exactly zero-width interval.
    if np.all(x == x[0]):
        low = high = float(x[0])
    return float(low), float(high)


def percentile_bootstrap_p(
    values: Sequence[float] | np.ndarray,
    *,
    alternative: str = "two-sided",
    resamples: int = 5000,
    seed: int = 0,
    chunk: int = 500,
) -> float:
    """Percentile-bootstrap p-value of "the mean of ``values`` is zero".

    Over the resampled means ``mean*`` (the draws :func:`percentile_bootstrap_ci` makes for
    the same ``resamples`` and ``seed``): ``greater`` (the mean is above zero) is
    ``P(mean* <= 0)``, ``less`` is ``P(mean* >= 0)``, ``two-sided`` twice the smaller, capped
    at 1. So ``greater`` below ``(1 - c) / 2`` agrees with the ``c`` interval lying above
    zero (up to the percentile's interpolation). A constant zero sample gives 1.0.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")
    _, means = _resampled_means(values, "percentile_bootstrap_p", resamples, seed, chunk)
    at_or_below, at_or_above = float(np.mean(means <= 0.0)), float(np.mean(means >= 0.0))
    if alternative == "greater":
        return at_or_below
    if alternative == "less":
        return at_or_above
    return min(1.0, 2.0 * min(at_or_below, at_or_above))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (family-wise error control).

    With the m p-values sorted ascending, the i-th (from 0) is multiplied by ``m - i``, the
    products are made non-decreasing (running maximum) and capped at 1. Hypothesis j is
    rejected at family-wise level alpha when its adjusted p-value is at most alpha; the
    smallest adjusted value is ``m * min(p)`` (for "some hypothesis holds", Holm's first
    step is Bonferroni's).
    """
    p = [float(v) for v in pvalues]
    if not p:
        raise ValueError("holm needs at least one p-value")
    if not all(0.0 <= v <= 1.0 for v in p):
        raise ValueError(f"holm needs p-values in [0, 1], got {p}")
    m = len(p)
    order = sorted(range(m), key=lambda j: p[j])
    adjusted = [0.0] * m
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        adjusted[j] = running
    return adjusted


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial test, p=0.5)."""
    if gained < 0 or lost < 0:
        raise ValueError("discordant counts must be non-negative")
    total = gained + lost
    if total == 0:
        return 1.0
    return float(sps.binomtest(min(gained, lost), total, 0.5).pvalue)


def tost_paired(deltas: Sequence[float] | np.ndarray, low: float, high: float) -> float:
    """Two one-sided t-tests for equivalence of the mean paired delta within (low, high).

    Returns the TOST p-value (the larger of the two one-sided p-values); small values support
    equivalence. A zero-variance sample gives 0.0 inside the bounds and 1.0 outside.
    """
    if not low < high:
        raise ValueError("TOST needs low < high")
    x = np.asarray(deltas, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("tost_paired needs a non-empty 1-D sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("tost_paired got NaN or inf values")
    if x.size < 2:
        return 1.0
    if np.all(x == x[0]):
        return 0.0 if low < x[0] < high else 1.0
    p_low = sps.ttest_1samp(x, low, alternative="greater").pvalue
    p_high = sps.ttest_1samp(x, high, alternative="less").pvalue
    return float(max(p_low, p_high))
