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

import typing
from collections.abc import Callable, Collection
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
    "RAMESH_LI_CONDITIONS",
    "ROLES",
    "STRICT_CONDITIONS",
    "Condition",
    "InjectionPlan",
    "InjectionSpec",
    "Shuffle",
    "alpha_tag",
    "get_condition",
    "register",
    "the_condition",
    "with_role",
]

Group = Literal["primary", "strict", "appendix", "extension"]
Mode = Literal["replace", "scale_corrected", "additive", "mean"]
States = Literal["receiver", "receiver_mean", "zero", "random", "translated"]
DIRECTIONS = ("fwd", "rev")


@dataclass(frozen=True)
class InjectionSpec:
    """What happens at the receiver block: the mode plus its alpha or scale.

    ``replace`` h <- s; ``scale_corrected`` h <- alpha * normalize(s) * ||h|| + (1 - alpha) * h;
    ``additive`` h <- h + scale * s; ``mean`` h <- (h + s) / 2. ``timing`` is when the hook
    acts (the runner implements the prompt prefill only); ``positions`` which prompt
    positions it changes: ``all`` real positions, or the ``last`` one only.
    ``broadcast_last``: every changed position receives the last prompt position's source
    vector (the paper's additive), instead of its own. One interpreter reads these fields for
    inference and for training through the receiver (``harness.model.plans``).
    """

    mode: Mode
    alpha: float = 1.0
    scale: float = 1.0
    timing: str = "prefill_only"
    positions: Literal["all", "last"] = "all"
    broadcast_last: bool = False


@dataclass(frozen=True)
class InjectionPlan:
    """What a condition injects.

    states: whose states are injected: the receiver's own (``receiver``), their mean over
        every eval prompt position (``receiver_mean``), zero vectors,
        random directions, or the sender's states through a translator (``translated``).
    mode: how they enter the receiver block (see :class:`InjectionSpec`).
    alpha: which protocol alpha a ``scale_corrected`` plan uses.
    translator: ``linear`` (the fitted translator) or ``causal`` (trained through the
        receiver on its answer loss, ``harness.model.causal``); ``raw_map`` (Ramesh & Li's W,
        fitted on raw final-token states at a searched layer pair, ``harness.run.ramesh_li``)
        or ``coords`` (no map: the last min(d_A, d_B) coordinates combined).
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
    translator: Literal["linear", "causal", "raw_map", "coords"] | None = None
    last_broadcast: bool = False
    shuffle: Literal["full", "strict"] | None = None
    last_token: bool = False
    scale: float | None = None

    def spec(self, protocol: Any) -> InjectionSpec:
        """The :class:`InjectionSpec` this plan runs under ``protocol``'s strengths."""
        positions: Literal["all", "last"] = "last" if self.last_token else "all"
        alpha, scale = 1.0, 1.0
        if self.mode == "additive":
            scale = protocol.injection.additive_scale if self.scale is None else self.scale
        elif self.mode == "scale_corrected":
            alpha = protocol.alpha_for(self.alpha)
        return InjectionSpec(
            self.mode,
            alpha=alpha,
            scale=scale,
            positions=positions,
            broadcast_last=self.last_broadcast,
        )


@dataclass(frozen=True)
class Shuffle:
    """The donors a shuffled condition drew: ``donors[i]`` is the eval row whose translated
    states row ``i`` received (``None``: row dropped, strict); ``singletons`` counts the rows
    alone in their prompt-length bucket (self-fallbacks, or with ``strict`` the dropped)."""

    donors: tuple[int | None, ...]
    singletons: int
    strict: bool


Role = Literal["baseline", "no_injection", "relay", "transfer", "replacement_style", "control"]
ROLES: tuple[Role, ...] = typing.get_args(Role)
ModelsRecord = Literal["pair", "pair_no_site", "receiver_self", "random_direction", "zero_vector"]
# (the spec that ran, the file-name alpha, the shuffle drawn) -> the file's ``injection`` block
InjectionRecord = Callable[[InjectionSpec | None, float | None, "Shuffle | None"], dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
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
        on a GPU (harness/tools/portability.py measures it); False for maps trained through the
        receiver, whose optimisation amplifies float rounding (harness.analysis.tolerance).
    roles: what claims, tables and figures treat it as (:data:`ROLES`): ``baseline`` (a
        comparison reference; ``no_injection`` and ``relay`` name the two), ``transfer``
        (carries the sender's states into the receiver), ``replacement_style`` (substitutes
        the receiver's state; the paper's abstract and Figure 3), ``control`` (a diagnostic).
    counterpart: the paper condition an extension modifies (drawn beside it in figures).
    """

    name: str
    group: Group
    deterministic: bool
    label: str
    plan: InjectionPlan | None
    injection_record: InjectionRecord = field(repr=False)
    alpha: Literal["scale_corrected", "best_alpha"] | None = None
    relay: bool = False
    models: ModelsRecord = "pair"
    exact_across_machines: bool = True
    roles: tuple[Role, ...] = ()
    counterpart: str | None = None

    def __post_init__(self) -> None:
        bad = [r for r in self.roles if r not in ROLES]
        if bad:
            raise ValueError(f"condition {self.name!r}: unknown roles {bad}; use {ROLES}")

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

    @property
    def reads_map_texts(self) -> bool:
        """Ramesh & Li's conditions: W (or their layer search) reads ``[translator] texts``."""
        return self.translator_kind in ("raw_map", "coords")


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
        out: dict[str, Any] = {"mode": mode, "timing": spec.timing, "source": source}
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


def _last_token_record(family: str, source: str) -> InjectionRecord:
    """The record of a last-token condition: ``{family}_{combine}`` from ``source``."""

    def record(spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None) -> dict:
        assert spec is not None
        combine = {"additive": "sum", "mean": "mean", "replace": "replace"}[spec.mode]
        return {
            "mode": f"{family}_{combine}",
            "timing": spec.timing,
            "positions": "last_token",
            "combine": combine,
            "scale": spec.scale if spec.mode == "additive" else None,
            "source": source,
        }

    return record


_last_token = _last_token_record("last_token", "translated_sender_last_token")


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


_TRANSFER: tuple[Role, ...] = ("transfer",)
_REPLACING: tuple[Role, ...] = ("transfer", "replacement_style")


def _linear(mode: Mode, **kw: Any) -> InjectionPlan:
    """A plan injecting the sender's states through the paper's fitted linear translator."""
    return InjectionPlan(states="translated", mode=mode, translator="linear", **kw)


for _c in (
    Condition(
        name="no_inject", group="primary", deterministic=True, label="no injection",
        plan=None, injection_record=_no_injection, models="pair_no_site",
        roles=("baseline", "no_injection"),
    ),
    Condition(
        name="nl_relay", group="primary", deterministic=True, label="NL relay",
        plan=None, injection_record=_natural_language, relay=True, roles=("baseline", "relay"),
    ),
    Condition(
        name="additive", group="primary", deterministic=False, label="additive",
        plan=_linear("additive", last_broadcast=True),
        injection_record=_translated, roles=_TRANSFER,
    ),
    Condition(
        name="replace", group="primary", deterministic=False, label="replace",
        plan=_linear("replace"), injection_record=_translated,
        roles=_REPLACING,
    ),
    Condition(
        name="scale_corrected", group="primary", deterministic=False, alpha="scale_corrected",
        label="scale-corrected",
        plan=_linear("scale_corrected", alpha="scale_corrected"),
        injection_record=_translated, roles=_REPLACING,
    ),
    Condition(
        name="best_alpha", group="primary", deterministic=False, alpha="best_alpha",
        label="best alpha",
        plan=_linear("scale_corrected", alpha="best_alpha"),
        injection_record=_translated, roles=_TRANSFER,
    ),
    Condition(
        name="b_to_b_self_inject", group="primary", deterministic=True, label="self-injection",
        plan=InjectionPlan("receiver", "replace"), injection_record=_sourced("receiver_self"),
        models="receiver_self", roles=("control",),
    ),
    Condition(
        name="same_norm_random", group="primary", deterministic=False, label="same-norm random",
        plan=InjectionPlan("random", "scale_corrected", alpha="scale_corrected"),
        injection_record=_sourced("random_direction", with_alpha=True),
        models="random_direction", roles=("control",),
    ),
    Condition(
        name="shuffled_translation", group="primary", deterministic=False,
        alpha="scale_corrected", label="shuffled (full-n)",
        plan=_linear(
            "scale_corrected", alpha="scale_corrected", shuffle="full"
        ),
        injection_record=_translated, roles=(*_REPLACING, "control"),
    ),
    Condition(
        name="shuffled_translation_strict_matched", group="strict", deterministic=False,
        alpha="scale_corrected", label="shuffled (strict)",
        plan=_linear(
            "scale_corrected", alpha="scale_corrected", shuffle="strict"
        ),
        injection_record=_translated, roles=(*_REPLACING, "control"),
    ),
    Condition(
        name="zero_replacement", group="appendix", deterministic=True, label="zero replacement",
        plan=InjectionPlan("zero", "replace"), injection_record=_sourced("zero_vector"),
        models="zero_vector", roles=("control",),
    ),
    # A control beyond the paper's appendix (and the worked example of docs/architecture.md):
    # mean ablation, the receiver's block output replaced at every prompt position by its mean
    # over every eval prompt position, a standard interpretability baseline beside zero
    # replacement. No shipped protocol lists it; `run --conditions mean_ablation` runs it.
    Condition(
        name="mean_ablation", group="appendix", deterministic=True, label="mean ablation",
        plan=InjectionPlan("receiver_mean", "replace"),
        injection_record=_sourced("receiver_mean"), models="receiver_self", roles=("control",),
    ),
    # Beyond the paper (issue #9): the same injections with a translator trained through the
    # frozen receiver on its answer loss (harness.model.causal).
    Condition(
        name="causal_replace", group="extension", deterministic=False, label="causal replace",
        plan=InjectionPlan("translated", "replace", translator="causal"),
        injection_record=_causal, exact_across_machines=False, roles=_REPLACING,
        counterpart="replace",
    ),
    Condition(
        name="causal_additive", group="extension", deterministic=False,
        label="causal additive",
        plan=InjectionPlan("translated", "additive", translator="causal", last_broadcast=True),
        injection_record=_causal, exact_across_machines=False, roles=_TRANSFER,
        counterpart="additive",
    ),
    # Beyond the paper (issue #20): last-token communication after Ramesh & Li, here *with
    # the negative-result paper's normalised translator T* (kept for the contrast with their
    # own map W, the rl_* conditions below):
    # "Communicating Activations Between Language Model Agents" (ICML 2025, arXiv
    # 2501.14082). As in their method, the receiver's state at one layer and the last prompt
    # position is combined with the sender's last-position state by f = sum, mean or replace,
    # and every other position is untouched. Unlike theirs, the sender's state passes through
    # the protocol's fitted linear translator T, which is trained on L2-normalised receiver
    # states (so T(s) has roughly unit norm, not the receiver's native norm); the layers are
    # the protocol's relative depth, not a searched pair; and the task is this protocol's QA,
    # not their coordination games. Prefill only.
    Condition(
        name="last_token_sum", group="extension", deterministic=False,
        label="last token: sum (normalised T)",
        plan=InjectionPlan(
            "translated", "additive", translator="linear", last_token=True, scale=1.0
        ),
        injection_record=_last_token, roles=_TRANSFER,
    ),
    Condition(
        name="last_token_mean", group="extension", deterministic=False,
        label="last token: mean (normalised T)",
        plan=InjectionPlan("translated", "mean", translator="linear", last_token=True),
        injection_record=_last_token, roles=_TRANSFER,
    ),
    Condition(
        name="last_token_replace", group="extension", deterministic=False,
        label="last token: replace (normalised T)",
        plan=InjectionPlan("translated", "replace", translator="linear", last_token=True),
        injection_record=_last_token, roles=_TRANSFER,
    ),
    # The paper's conjecture where it has room to be true (issue #20): last-token replace with
    # a map trained through the receiver on its answer loss, the receiver reading its own
    # prompt (in the withheld regime, without the context) and the sender the full one.
    Condition(
        name="last_token_causal_replace", group="extension", deterministic=False,
        label="last token: causal replace",
        plan=InjectionPlan("translated", "replace", translator="causal", last_token=True),
        injection_record=_last_token_causal, exact_across_machines=False, roles=_TRANSFER,
        counterpart="last_token_replace",
    ),
):  # fmt: skip
    register(_c)


# Beyond the paper (issue #28): Ramesh & Li's method as they define it (arXiv 2501.14082,
# Section 3). Only the receiver's last prompt position after block j changes, to f(W a, b),
# with a the sender's last-token state after block k, (k, j) chosen by a layer search on a
# split disjoint from the eval, and W their task-agnostic map fitted by least squares on raw
# final-token states of both models reading the same texts (so W a has the receiver's
# scale; the identity where the sender is the receiver). The rl_coords_* conditions are
# their map-free cross-width combine: f over the last min(d_A, d_B) coordinates. Both maps
# are deterministic (W is a float64 least-squares solution on fixed texts), so each runs
# once: one file, no seed (pooling identical seed files would only narrow the CI).
def _ramesh_li(source: str) -> InjectionRecord:
    return _last_token_record("ramesh_li", source)


_RL_COMBINES: tuple[tuple[str, Mode], ...] = (
    ("sum", "additive"),
    ("mean", "mean"),
    ("replace", "replace"),
)
# Per combine: W's condition, then the last-coordinates one (translator, label, source).
_RL_KINDS: tuple[tuple[Literal["raw_map", "coords"], str, str, str], ...] = (
    ("raw_map", "map", "their W", "raw_map_sender_last_token"),
    ("coords", "coords", "last coords", "sender_last_token_last_coordinates"),
)
for _f, _mode in _RL_COMBINES:
    for _translator, _prefix, _what, _source in _RL_KINDS:
        register(
            Condition(
                name=f"rl_{_prefix}_{_f}",
                group="extension",
                deterministic=True,
                alpha=None,
                label=f"R&L {_f}, {_what}",
                plan=InjectionPlan(
                    states="translated", mode=_mode, translator=_translator, last_token=True,
                    scale=1.0 if _mode == "additive" else None,
                ),
                injection_record=_ramesh_li(_source),
            )
        )  # fmt: skip
# Ramesh & Li's conditions as they define them (issue #28).
RAMESH_LI_CONDITIONS: tuple[str, ...] = tuple(
    n for n, c in CONDITIONS.items() if c.plan and c.plan.translator in ("raw_map", "coords")
)

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


def with_role(role: Role, groups: Collection[Group] | None = None) -> tuple[str, ...]:
    """The registered conditions that carry ``role`` (in registration order), optionally only
    those of ``groups``: the one place claims, tables, figures and validation learn which
    conditions are baselines, transfers or replacement-style."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; use {ROLES}")
    return tuple(
        n
        for n, c in CONDITIONS.items()
        if role in c.roles and (groups is None or c.group in groups)
    )


def the_condition(role: Role) -> str:
    """The single condition with ``role`` (``no_injection``, ``relay``)."""
    (name,) = with_role(role)
    return name


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
