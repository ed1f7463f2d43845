"""Section 5 -- Scope: the negative result speaks to a low-baseline, weak-receiver regime."""

from __future__ import annotations

from claims._util import need
from harness.sources import Source


def test_baseline_word_boundary_accuracy_is_below_10_percent(source: Source, measured) -> None:
    """ "Baseline word-boundary accuracy is below 10%, so the negative result speaks to a
    low-baseline, weak-receiver regime; stronger receivers, easier tasks, or receiver-adapted
    transfer protocols could in principle change the picture." (Section 5) -- "baseline" is
    both of the paper's baselines (Section 3.4 compares every condition "to no-injection and
    natural-language relay"): each must lie below 10%. A source where this fails tests the
    paper's claims outside the regime it scoped them to."""
    need(source, "no_inject", "nl_relay")
    accs = {c: source.wb(c) for c in ("no_inject", "nl_relay")}
    msg = measured(
        f"word-boundary accuracy: no-injection {accs['no_inject'] * 100:.2f}%, relay "
        f"{accs['nl_relay'] * 100:.2f}%",
        accuracy=accs["no_inject"],
        relay_accuracy=accs["nl_relay"],
    )
    assert max(accs.values()) < 0.10, msg
