"""The registry of conditions: one object per condition, everything about it in one place.

A :class:`Condition` carries its metadata (group, determinism, file-name alpha, label), its
:class:`InjectionPlan` (what it injects, from which states, with which :class:`InjectionSpec`)
and the record it writes (the ``models`` and ``injection`` blocks of its result file, built
from the spec that actually ran). The runner interprets plans; validation, tables, figures and
claims read the metadata. Torch-free.

Adding a condition: one :func:`register` call here, and its name in a protocol's ``[run]``
lists (``extension_conditions`` for a condition beyond the paper).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CAUSAL_MODES",
    "CONDITIONS",
    "DIRECTIONS",
    "EXTENSION_CONDITIONS",
    "LAST_TOKEN_CONDITIONS",
    "MAIN_TABLE_CONDITIONS",
    "PRIMARY_CONDITIONS",
    "STRICT_CONDITIONS",
    "Condition",
    "InjectionPlan",
    "InjectionSpec",
    "Shuffle",
    "alpha_tag",
    "get_condition",
    "register",
]

Group = Literal["primary", "strict", "appendix", "extension"]
Mode = Literal["replace", "scale_corrected", "additive", "mean"]
States = Literal["receiver", "zero", "random", "translated"]
DIRECTIONS = ("fwd", "rev")


@dataclass(frozen=True)
class InjectionSpec:
    """What happens at the receiver block: the mode plus its alpha or scale.

    ``replace`` h <- s; ``scale_corrected`` h <- alpha * normalize(s) * ||h|| + (1 - alpha) * h;
    ``additive`` h <- h + scale * s; ``mean`` h <- (h + s) / 2. ``timing`` is when the hook
    acts (the runner implements the prompt prefill only); ``positions`` which prompt
    positions it changes: ``all`` real positions, or the ``last`` one only.
    """

    mode: Mode
    alpha: float = 1.0
    scale: float = 1.0
    timing: str = "prefill_only"
    positions: Literal["all", "last"] = "all"


@dataclass(frozen=True)
class InjectionPlan:
    """What a condition injects.

    states: whose states are injected: the receiver's own (``receiver``), zero vectors,
        random directions, or the sender's states through a translator (``translated``).
    mode: how they enter the receiver block (see :class:`InjectionSpec`).
    alpha: which protocol alpha a ``scale_corrected`` plan uses.
    translator: ``linear`` (the fitted translator) or ``causal`` (trained through the
        receiver on its answer loss, ``harness.model.causal``).
    last_broadcast: inject the last prompt position's vector at every position (additive).
    shuffle: ``full`` / ``strict``: each sample receives another sample's translated states
        of the same prompt length (strict drops singleton lengths instead of falling back).
    last_token: act on the last prompt position only, with the sender's last-position state
        (sender and receiver prompts may then differ).
    scale: a fixed additive scale (None: the protocol's ``injection.additive_scale``).
    """

    states: States
    mode: Mode
    alpha: Literal["scale_corrected", "best_alpha"] | None = None
    translator: Literal["linear", "causal"] | None = None
    last_broadcast: bool = False
    shuffle: Literal["full", "strict"] | None = None
    last_token: bool = False
    scale: float | None = None

    def spec(self, protocol: Any) -> InjectionSpec:
        """The :class:`InjectionSpec` this plan runs under ``protocol``'s strengths."""
        positions: Literal["all", "last"] = "last" if self.last_token else "all"
        if self.mode == "additive":
            scale = protocol.injection.additive_scale if self.scale is None else self.scale
            return InjectionSpec("additive", scale=scale, positions=positions)
        if self.mode in ("replace", "mean"):
            return InjectionSpec(self.mode, positions=positions)
        return InjectionSpec(
            "scale_corrected", alpha=protocol.alpha_for(self.alpha), positions=positions
        )


@dataclass(frozen=True)
class Shuffle:
    """The donors a shuffled condition drew: ``donors[i]`` is the eval row whose translated
    states row ``i`` received (``None``: row dropped, strict); ``singletons`` counts the rows
    alone in their prompt-length bucket (self-fallbacks, or with ``strict`` the dropped)."""

    donors: tuple[int | None, ...]
    singletons: int
    strict: bool


ModelsRecord = Literal["pair", "pair_no_site", "receiver_self", "random_direction", "zero_vector"]
# (the spec that ran, the file-name alpha, the shuffle drawn) -> the file's ``injection`` block
InjectionRecord = Callable[[InjectionSpec | None, float | None, "Shuffle | None"], dict[str, Any]]


@dataclass(frozen=True)
class Condition:
    """One experimental condition.

    name: the ``condition`` field of a result file.
    group: primary (the 21-file main grid), strict (the 3 strict-matched files), appendix
        (zero replacement), extension (beyond the paper).
    deterministic: one file, no seed (the receiver's input does not depend on a seed).
    alpha: which protocol alpha goes into the file name (``_alpha1p0``), if any.
    label: short human name used in tables and figures.
    plan: what it injects (None: no injection; see ``relay``).
    relay: the receiver reads the sender's natural-language relay instead of the context.
    models: the layout of the result file's ``models`` block.
    injection_record: builds the ``injection`` block from the spec that ran, the file-name
        alpha and the :class:`Shuffle` drawn (shuffled conditions).
    exact_across_machines: its predictions are the same on every CPU kind, thread count and
        on a GPU (tools/portability.py measures it); False for maps trained through the
        receiver, whose optimisation amplifies float rounding (harness.analysis.tolerance).
    """

    name: str
    group: Group
    deterministic: bool
    alpha: Literal["scale_corrected", "best_alpha"] | None
    label: str
    plan: InjectionPlan | None
    injection_record: InjectionRecord = field(repr=False)
    relay: bool = False
    models: ModelsRecord = "pair"
    exact_across_machines: bool = True

    @property
    def uses_translator(self) -> bool:
        """Needs a translator fitted on sender -> receiver activations."""
        return self.plan is not None and self.plan.states == "translated"

    @property
    def sequence_level(self) -> bool:
        """Injects per prompt position, so sender and receiver token ids must match."""
        return self.plan is not None and not self.plan.last_token

    @property
    def translator_kind(self) -> str | None:
        return self.plan.translator if self.plan is not None else None


# -- the records each condition writes (field names and order as in the published files) ---
def _no_injection(spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None) -> dict:
    return {"mode": "none"}


def _natural_language(
    spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None
) -> dict:
    return {"mode": "natural_language"}


def _sourced(source: str, *, with_alpha: bool = False) -> InjectionRecord:
    """A control whose injected states name their source (receiver, zero, random)."""

    def record(spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None) -> dict:
        assert spec is not None
        mode = "replace_scale_corrected" if spec.mode == "scale_corrected" else spec.mode
        out = {"mode": mode, "timing": spec.timing, "source": source}
        if with_alpha:
            out["alpha"] = spec.alpha
        return out

    return record


def _translated(spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None) -> dict:
    assert spec is not None
    mode = "replace_scale_corrected" if spec.mode == "scale_corrected" else spec.mode
    out: dict[str, Any] = {
        "mode": mode,
        "timing": spec.timing,
        "scale": spec.scale if spec.mode == "additive" else None,
        "alpha": alpha,
        "shuffle_injection_mode": None,
    }
    if shuffle is not None:
        out["shuffle_injection_mode"] = mode.removeprefix("replace_")
        out["strict_matched_subset"] = shuffle.strict
        out["shuffle_excluded_singleton_count"] = shuffle.singletons if shuffle.strict else 0
    return out


def _last_token(spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None) -> dict:
    assert spec is not None
    combine = {"additive": "sum", "mean": "mean", "replace": "replace"}[spec.mode]
    return {
        "mode": f"last_token_{combine}",
        "timing": spec.timing,
        "positions": "last_token",
        "combine": combine,
        "scale": spec.scale if spec.mode == "additive" else None,
        "source": "translated_sender_last_token",
    }


def _causal(spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None) -> dict:
    return {**_translated(spec, None, shuffle), "translator_objective": "receiver_answer_nll"}


def _last_token_causal(
    spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None
) -> dict:
    return {**_last_token(spec, alpha, shuffle), "translator_objective": "receiver_answer_nll"}


CONDITIONS: dict[str, Condition] = {}


def register(condition: Condition) -> Condition:
    """Add a condition to the registry (names are unique)."""
    if condition.name in CONDITIONS:
        raise ValueError(f"condition {condition.name!r} is already registered")
    CONDITIONS[condition.name] = condition
    return condition


_linear = {"states": "translated", "translator": "linear"}
for _c in (
    Condition(
        "no_inject", "primary", True, None, "no injection", None, _no_injection,
        models="pair_no_site",
    ),
    Condition("nl_relay", "primary", True, None, "NL relay", None, _natural_language, relay=True),
    Condition(
        "additive", "primary", False, None, "additive",
        InjectionPlan(mode="additive", last_broadcast=True, **_linear), _translated,
    ),
    Condition(
        "replace", "primary", False, None, "replace",
        InjectionPlan(mode="replace", **_linear), _translated,
    ),
    Condition(
        "scale_corrected", "primary", False, "scale_corrected", "scale-corrected",
        InjectionPlan(mode="scale_corrected", alpha="scale_corrected", **_linear), _translated,
    ),
    Condition(
        "best_alpha", "primary", False, "best_alpha", "best alpha",
        InjectionPlan(mode="scale_corrected", alpha="best_alpha", **_linear), _translated,
    ),
    Condition(
        "b_to_b_self_inject", "primary", True, None, "self-injection",
        InjectionPlan("receiver", "replace"), _sourced("receiver_self"),
        models="receiver_self",
    ),
    Condition(
        "same_norm_random", "primary", False, None, "same-norm random",
        InjectionPlan("random", "scale_corrected", alpha="scale_corrected"),
        _sourced("random_direction", with_alpha=True), models="random_direction",
    ),
    Condition(
        "shuffled_translation", "primary", False, "scale_corrected", "shuffled (full-n)",
        InjectionPlan(mode="scale_corrected", alpha="scale_corrected", shuffle="full", **_linear),
        _translated,
    ),
    Condition(
        "shuffled_translation_strict_matched", "strict", False, "scale_corrected",
        "shuffled (strict)",
        InjectionPlan(
            mode="scale_corrected", alpha="scale_corrected", shuffle="strict", **_linear
        ),
        _translated,
    ),
    Condition(
        "zero_replacement", "appendix", True, None, "zero replacement",
        InjectionPlan("zero", "replace"), _sourced("zero_vector"), models="zero_vector",
    ),
    # Beyond the paper (issue #9): the same injections with a translator trained through the
    # frozen receiver on its answer loss (harness.model.causal).
    Condition(
        "causal_replace", "extension", False, None, "causal replace",
        InjectionPlan("translated", "replace", translator="causal"), _causal,
        exact_across_machines=False,
    ),
    Condition(
        "causal_additive", "extension", False, None, "causal additive",
        InjectionPlan("translated", "additive", translator="causal", last_broadcast=True),
        _causal,
        exact_across_machines=False,
    ),
    # Beyond the paper (issue #20): last-token communication after Ramesh & Li,
    # "Communicating Activations Between Language Model Agents" (ICML 2025, arXiv
    # 2501.14082). As in their method, the receiver's state at one layer and the last prompt
    # position is combined with the sender's last-position state by f = sum, mean or replace,
    # and every other position is untouched. Unlike theirs, the sender's state passes through
    # the protocol's fitted linear translator T, which is trained on L2-normalised receiver
    # states (so T(s) has roughly unit norm, not the receiver's native norm); the layers are
    # the protocol's relative depth, not a searched pair; and the task is this protocol's QA,
    # not their coordination games. Prefill only.
    Condition(
        "last_token_sum", "extension", False, None, "last token: sum",
        InjectionPlan("translated", "additive", translator="linear", last_token=True, scale=1.0),
        _last_token,
    ),
    Condition(
        "last_token_mean", "extension", False, None, "last token: mean",
        InjectionPlan("translated", "mean", translator="linear", last_token=True), _last_token,
    ),
    Condition(
        "last_token_replace", "extension", False, None, "last token: replace",
        InjectionPlan("translated", "replace", translator="linear", last_token=True),
        _last_token,
    ),
    # The paper's conjecture where it has room to be true (issue #20): last-token replace with
    # a map trained through the receiver on its answer loss, the receiver reading its own
    # prompt (in the withheld regime, without the context) and the sender the full one.
    Condition(
        "last_token_causal_replace", "extension", False, None, "last token: causal replace",
        InjectionPlan("translated", "replace", translator="causal", last_token=True),
        _last_token_causal, exact_across_machines=False,
    ),
):  # fmt: skip
    register(_c)

PRIMARY_CONDITIONS: tuple[str, ...] = tuple(
    n for n, c in CONDITIONS.items() if c.group == "primary"
)
STRICT_CONDITIONS: tuple[str, ...] = tuple(n for n, c in CONDITIONS.items() if c.group == "strict")
EXTENSION_CONDITIONS: tuple[str, ...] = tuple(
    n for n, c in CONDITIONS.items() if c.group == "extension"
)
# Which injection each causal condition trains for and applies.
LAST_TOKEN_CONDITIONS: tuple[str, ...] = tuple(
    n for n, c in CONDITIONS.items() if c.plan is not None and c.plan.last_token
)
CAUSAL_MODES: dict[str, str] = {
    n: c.plan.mode for n, c in CONDITIONS.items() if c.plan and c.plan.translator == "causal"
}
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
