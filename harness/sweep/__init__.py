"""Sweeps as sources: each point of a sweep file is a runner source named ``<sweep>/<point>``.

``pytest claims --source SWEEP.toml`` expands the sweep into one ``--source`` token per point
(``PATH.toml#label``, :func:`expand_tokens`), so every claim runs on every point;
:func:`spec_of` and :func:`load_any` resolve a point token or, for anything else, defer to
:func:`harness.sources.source_spec` and :func:`harness.sources.load_source`. A point's
results are cached by its protocol hash like any protocol file's, under the cache folder
``sweep`` (or, where a point is exactly a registered source's protocol, that source's own
entry), never under the sweep's name: a point two sweeps share is computed once. Torch-free.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path

from harness.errors import HarnessError
from harness.protocol import load_protocol
from harness.sources import (
    REGISTRY,
    Source,
    SourceSpec,
    SourceUnavailable,
    load_source,
    runner_source,
    source_spec,
    store,
)
from harness.spec.sweep import (
    Point,
    Sweep,
    is_sweep_file,
    load_sweep,
    point_token,
    split_point_token,
)

__all__ = [
    "CACHE_NAME",
    "cache_name",
    "expand_tokens",
    "load_any",
    "load_point_source",
    "point_of",
    "point_spec",
    "sealed_results",
    "spec_of",
]

CACHE_NAME = "sweep"  # the cache folder of every point that is no registered source's protocol


@functools.cache
def _sweep(path: str) -> Sweep:
    return load_sweep(path)


def expand_tokens(tokens: Iterable[str]) -> list[str]:
    """``--source`` tokens with every sweep file replaced by its points' tokens (loading and
    checking the sweep: a bad axis is one :class:`HarnessError` before any work)."""
    out: list[str] = []
    for token in tokens:
        if is_sweep_file(token):
            sweep = _sweep(str(Path(token).resolve()))
            out += [point_token(sweep.path, p.label) for p in sweep.points]
        else:
            out.append(token)
    return out


def point_of(token: str) -> tuple[Sweep, Point]:
    """The sweep and point a point token (``PATH.toml#label``) names."""
    parsed = split_point_token(token)
    if parsed is None:
        raise HarnessError(f"{token!r} is not a sweep point", "write PATH.toml#label")
    path, label = parsed
    if not path.is_file():
        raise SourceUnavailable(f"sweep file {path} not found")
    sweep = _sweep(str(path.resolve()))
    return sweep, sweep.point(label)


def point_spec(token: str) -> SourceSpec:
    """The source registry row of a sweep point: a runner source named ``<sweep>/<label>``."""
    _, point = point_of(token)
    return SourceSpec(point.name, "runner", token)


@functools.cache
def _registered_hashes() -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in REGISTRY.values():
        if spec.kind == "runner":
            out.setdefault(load_protocol(spec.protocol).hash, spec.name)
    return out


def cache_name(point: Point) -> str:
    """The cache folder of a point: a registered source's own when the point is exactly its
    protocol (same hash), else :data:`CACHE_NAME`; never the sweep's name."""
    return _registered_hashes().get(point.protocol.hash, CACHE_NAME)


def sealed_results(point: Point) -> Path | None:
    """The point's cached result folder if it is complete (computed and sealed), else None;
    never computes."""
    return store.sealed_results(cache_name(point), point.protocol)


def load_point_source(token: str, *, artifact: str | None = None, device: str = "cpu") -> Source:
    """A sweep point as a runner source (computed once into the cache), or
    :class:`SourceUnavailable` with the reason (e.g. its weights are absent)."""
    sweep, point = point_of(token)
    return runner_source(
        point.name,
        point.protocol,
        cache_name=cache_name(point),
        artifact=artifact,
        device=device,
        meta={"protocol": token, "sweep": sweep.name, "point": point.label},
    )


def spec_of(token: str) -> SourceSpec:
    """The registry row of any ``--source`` token: a sweep point's, else
    :func:`harness.sources.source_spec`'s (a whole sweep file is refused: expand it first)."""
    if split_point_token(token) is not None:
        return point_spec(token)
    if is_sweep_file(token):
        raise HarnessError(
            f"{token} is a sweep file, not one source",
            "give it to 'pytest claims --source' (every point runs), or name one point as "
            "PATH.toml#label",
        )
    return source_spec(token)


def load_any(token: str, *, artifact: str | None = None, device: str = "cpu") -> Source:
    """:func:`load_point_source` for a sweep point, else :func:`harness.sources.load_source`."""
    if split_point_token(token) is not None:
        return load_point_source(token, artifact=artifact, device=device)
    return load_source(token, artifact=artifact, device=device)
