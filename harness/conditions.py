"""The registry of injection conditions: names, groups, determinism and file naming.

Torch-free: the result-file half (naming, validation, claims) and the model half (the runner,
which turns a condition into an injection plan) share this one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CAUSAL_MODES",
    "CONDITIONS",
    "DIRECTIONS",
    "EXTENSION_CONDITIONS",
    "MAIN_TABLE_CONDITIONS",
    "PRIMARY_CONDITIONS",
    "STRICT_CONDITIONS",
    "Condition",
    "alpha_tag",
    "get_condition",
]

Group = Literal["primary", "strict", "appendix", "extension"]
DIRECTIONS = ("fwd", "rev")


@dataclass(frozen=True)
class Condition:
    """One experimental condition of the paper.

    name: the ``condition`` field of a result file.
    group: primary (the 21-file main grid), strict (the 3 strict-matched files), appendix
        (zero replacement), extension (beyond the paper).
    deterministic: one file, no seed (the receiver's input does not depend on a seed).
    alpha: which protocol alpha goes into the file name (``_alpha1p0``), if any.
    uses_translator: needs a translator fitted on sender -> receiver activations.
    sequence_level: injects per prompt position, so sender and receiver token ids must match.
    label: short human name used in tables and figures.
    exact_across_machines: its predictions are the same on every CPU kind, thread count and
        on a GPU (tools/portability.py measures it); False for maps trained through the
        receiver, whose optimisation amplifies float rounding (harness.analysis.tolerance).
    """

    name: str
    group: Group
    deterministic: bool
    alpha: Literal["scale_corrected", "best_alpha"] | None
    uses_translator: bool
    sequence_level: bool
    label: str
    exact_across_machines: bool = True


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("no_inject", "primary", True, None, False, False, "no injection"),
        Condition("nl_relay", "primary", True, None, False, False, "NL relay"),
        Condition("additive", "primary", False, None, True, True, "additive"),
        Condition("replace", "primary", False, None, True, True, "replace"),
        Condition(
            "scale_corrected", "primary", False, "scale_corrected", True, True, "scale-corrected"
        ),
        Condition("best_alpha", "primary", False, "best_alpha", True, True, "best alpha"),
        Condition("b_to_b_self_inject", "primary", True, None, False, True, "self-injection"),
        Condition("same_norm_random", "primary", False, None, False, True, "same-norm random"),
        Condition(
            "shuffled_translation",
            "primary",
            False,
            "scale_corrected",
            True,
            True,
            "shuffled (full-n)",
        ),
        Condition(
            "shuffled_translation_strict_matched",
            "strict",
            False,
            "scale_corrected",
            True,
            True,
            "shuffled (strict)",
        ),
        Condition("zero_replacement", "appendix", True, None, False, True, "zero replacement"),
        # Beyond the paper (issue #9): the same injections with a translator trained through
        # the frozen receiver on its answer loss (harness.model.causal).
        Condition("causal_replace", "extension", False, None, True, True, "causal replace", False),
        Condition(
            "causal_additive", "extension", False, None, True, True, "causal additive", False
        ),
    )
}

PRIMARY_CONDITIONS: tuple[str, ...] = tuple(
    n for n, c in CONDITIONS.items() if c.group == "primary"
)
STRICT_CONDITIONS: tuple[str, ...] = tuple(n for n, c in CONDITIONS.items() if c.group == "strict")
EXTENSION_CONDITIONS: tuple[str, ...] = tuple(
    n for n, c in CONDITIONS.items() if c.group == "extension"
)
# Which injection each causal condition trains for and applies.
CAUSAL_MODES: dict[str, str] = {"causal_replace": "replace", "causal_additive": "additive"}
# The paper's main table rows (Section 4.1); the audit slice uses the first six.
MAIN_TABLE_CONDITIONS: tuple[str, ...] = PRIMARY_CONDITIONS + STRICT_CONDITIONS


def get_condition(name: str) -> Condition:
    """Look up a condition, with a clear error for unknown names."""
    try:
        return CONDITIONS[name]
    except KeyError:
        from harness.errors import HarnessError

        raise HarnessError(
            f"unknown condition {name!r}",
            f"use one of: {', '.join(CONDITIONS)}",
        ) from None


def alpha_tag(alpha: float) -> str:
    """File-name tag of an alpha value: 0.3 -> ``alpha0p3``, 1.0 -> ``alpha1p0``."""
    text = repr(float(alpha))
    return "alpha" + text.replace("-", "m").replace(".", "p")
