"""The one job grid: which result files a protocol's run writes, under which names.

The runner plans its work with :func:`jobs`; the validator derives the files it expects from
the same function (:func:`expected`), so the two cannot disagree. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from harness.conditions import CONDITIONS, alpha_tag, get_condition
from harness.errors import HarnessError
from harness.spec.rules import check_directions, check_seeds

if TYPE_CHECKING:
    from harness.protocol import Protocol

__all__ = [
    "GROUPS",
    "Job",
    "expected",
    "jobs",
    "left_out",
    "result_filename",
]

Group = Literal["primary", "strict", "appendix", "extension"]
GROUPS: tuple[Group, ...] = ("primary", "strict", "appendix", "extension")


@dataclass(frozen=True)
class Job:
    """One result file: a condition in a direction with a seed (``None`` if deterministic)."""

    condition: str
    direction: str
    seed: int | None
    filename: str


def result_filename(
    condition: str, direction: str, seed: int | None, alpha: float | None = None
) -> str:
    """The artifact's naming: ``h1_{condition}_{direction}_{seed42|deterministic}[_alpha1p0].json``."""
    parts = ["h1", condition, direction, "deterministic" if seed is None else f"seed{seed}"]
    if alpha is not None:
        parts.append(alpha_tag(alpha))
    return "_".join(parts) + ".json"


def _group_conditions(protocol: Protocol, groups: Iterable[Group]) -> list[str]:
    lists = {
        "primary": protocol.run.conditions,
        "strict": protocol.run.strict_conditions,
        "appendix": protocol.run.appendix_conditions,
        "extension": protocol.run.extension_conditions,
    }
    out: list[str] = []
    for g in groups:
        if g not in lists:
            raise HarnessError(f"unknown condition group {g!r}", f"use one of {GROUPS}")
        out += [c for c in lists[g] if c not in out]
    return out


def left_out(protocol: Protocol) -> dict[str, str]:
    """Conditions the protocol lists but cannot run, each with why and the fix: the grid
    leaves them out (the runner says so once; their claims skip with the reason). Only
    Ramesh & Li's conditions today, whose map W is fitted on ``[translator] texts``; a run
    that names one of them explicitly still refuses, naming the key."""
    if protocol.translator.texts:
        return {}
    listed = [*protocol.run.extension_conditions, *protocol.run.appendix_conditions]
    return {
        c: f"{c} needs [translator] texts (Ramesh & Li fit W on texts both models read), "
        'which this protocol leaves empty: set it to a JSONL of at least d_A {"text"} rows '
        "disjoint from the eval to run it"
        for c in listed
        if c in CONDITIONS and CONDITIONS[c].reads_map_texts
    }


def jobs(
    protocol: Protocol,
    groups: Iterable[Group] = ("primary", "strict"),
    *,
    conditions: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    directions: Sequence[str] | None = None,
) -> list[Job]:
    """The result files of ``protocol``'s run, in order (direction, condition, seed).

    ``groups`` chooses which of the protocol's ``[run]`` condition lists take part;
    ``conditions`` (a list of names) replaces them. Deterministic conditions write one file;
    seed-dependent ones one file per seed. The file name carries the alpha the protocol gives
    the condition (``alpha_for``). Listed conditions the protocol cannot run
    (:func:`left_out`) are not in the grid; named in ``conditions``, they are.
    """
    if conditions is not None:
        names = list(conditions)
    else:
        skip = left_out(protocol)
        names = [c for c in _group_conditions(protocol, groups) if c not in skip]
    seed_list = list(protocol.run.seeds if seeds is None else seeds)
    check_seeds(seed_list)
    dirs = list(protocol.run.directions if directions is None else directions)
    check_directions(dirs)
    out = []
    for direction in dirs:
        for name in names:
            cond = get_condition(name)
            alpha = protocol.alpha_for(cond.alpha)
            for seed in [None] if cond.deterministic else seed_list:
                out.append(
                    Job(name, direction, seed, result_filename(name, direction, seed, alpha))
                )
    return out


def expected(
    protocol: Protocol, groups: Iterable[Group] = ("primary",), *, every_extension: bool = False
) -> dict[str, Job]:
    """File name -> :class:`Job` of every file ``groups`` of the protocol's grid must hold.

    ``every_extension``: add every registered extension condition, listed in the protocol or
    not (files a user ran by hand are checked like the grid when present)."""
    skip = left_out(protocol)
    names = [c for c in _group_conditions(protocol, groups) if c not in skip]
    if every_extension:
        extra = [n for n, c in CONDITIONS.items() if c.group == "extension"]
        names = list(dict.fromkeys(names + extra))
    return {j.filename: j for j in jobs(protocol, conditions=names)}
