"""Paired statistics on per-sample 0/1 outcomes: bootstrap CI, McNemar, TOST.

Pure numpy/scipy; every random draw comes from an explicit seeded generator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["label_seed", "mcnemar_exact", "percentile_bootstrap_ci", "tost_paired"]


def label_seed(*labels: object) -> int:
    """A reproducible 32-bit seed derived from a row's labels (stable across processes)."""
    text = "|".join(str(x) for x in labels)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


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
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("percentile_bootstrap_ci needs a non-empty 1-D sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("percentile_bootstrap_ci got NaN or inf values")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if resamples < 1:
        raise ValueError("resamples must be >= 1")
    rng = np.random.default_rng(seed)
    n = x.size
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    # Guard float noise so a constant sample gives an exactly zero-width interval.
    if np.all(x == x[0]):
        low = high = float(x[0])
    return float(low), float(high)


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
