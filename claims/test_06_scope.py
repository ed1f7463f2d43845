"""Section 5 -- Scope: the negative result speaks to a low-baseline, weak-receiver regime."""

from __future__ import annotations

from claims._util import need
from harness.sources import Source


def test_baseline_word_boundary_accuracy_is_below_10_percent(source: Source, measured) -> None:
    """ "Baseline word-boundary accuracy is below 10%, so the negative result speaks to a
    low-baseline, weak-receiver regime; stronger receivers, easier tasks, or receiver-adapted
    transfer protocols could in principle change the picture." (Section 5) -- a source where
    this fails tests the paper's claims outside the regime it scoped them to."""
    need(source, "no_inject")
    acc = source.wb("no_inject")
    msg = measured(f"no-injection word-boundary accuracy {acc * 100:.2f}%", accuracy=acc)
    assert acc < 0.10, msg
