"""Seed and direction rules, checked in one place for every caller: the protocol's rules,
the command line and the job grid. Torch-free; imports only the registry and errors."""

from __future__ import annotations

from collections.abc import Sequence

from harness.conditions import DIRECTIONS
from harness.errors import HarnessError

__all__ = ["check_directions", "check_seeds", "direction_problems", "seed_problems"]

SEED_RANGE = 2**32


def seed_problems(seeds: Sequence[object], where: str) -> list[str]:
    """Why ``seeds`` is not a usable seed list (empty list: it is): at least one, unique,
    integers in [0, 2^32)."""
    out = []
    if not seeds:
        out.append(f"{where} = []: must hold at least one seed")
    if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        out.append(f"{where} = {list(seeds)}: seeds must be integers")
        return out
    if len(set(seeds)) != len(seeds):
        out.append(f"{where} = {list(seeds)}: must be unique")
    if any(not 0 <= s < SEED_RANGE for s in seeds):  # type: ignore[operator]
        out.append(f"{where} = {list(seeds)}: each must be in [0, 2^32)")
    return out


def direction_problems(directions: Sequence[str], where: str) -> list[str]:
    """Why ``directions`` is not a usable direction list: unique, not empty, fwd and/or rev."""
    out = []
    if not directions or len(set(directions)) != len(directions):
        out.append(f"{where} = {list(directions)}: must be unique and not empty")
    out += [
        f"{where} has {d!r}: must be 'fwd' and/or 'rev'" for d in directions if d not in DIRECTIONS
    ]
    return out


def check_seeds(seeds: Sequence[object], where: str = "seeds") -> None:
    """One-line error for an unusable seed list."""
    problems = seed_problems(seeds, where)
    if problems:
        raise HarnessError(problems[0], "e.g. seeds 42, 123, 456")


def check_directions(directions: Sequence[str], where: str = "directions") -> None:
    """One-line error for an unusable direction list."""
    problems = direction_problems(directions, where)
    if problems:
        raise HarnessError(problems[0], "use fwd and/or rev")
