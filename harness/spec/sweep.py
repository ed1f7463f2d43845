"""A sweep: one base protocol and axes of dotted protocol keys, expanded into points.

A sweep file (TOML) names a base protocol, optional values fixed on every point, and one or
more axes; its points are the cartesian product of the axes, each a complete
:class:`~harness.protocol.Protocol` with its own hash (so a point two sweeps share is one
cache entry). Every point is checked against the protocol's rules when the sweep loads, so a
bad axis is refused before any work, naming the point and the rule::

    [sweep]
    name = "ladder"                       # names the sources <name>/<point> and out/<name>/
    description = "..."
    base = "../mini.toml"                 # a protocol name or a path relative to this file

    [set]                                 # optional: dotted keys fixed on every point
    "run.extension_conditions" = []

    [[axis]]
    key = "models.receiver"               # a dotted protocol key
    values = ["../harness/mini/models/ladder/receiver/step00100", "..."]
    labels = ["step00100", "..."]         # optional: the point names (default: from values)
    x = [100, "..."]                      # optional: numbers to plot the values at
    title = "receiver training step"      # optional: the figures' axis title (default: key)

Values are protocol values as the base protocol would hold them: a path resolves against
the base protocol's folder. Torch-free.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import read_text_bounded
from harness.protocol import (
    _SECTIONS,
    PROTOCOL_DIR,
    Protocol,
    _coerce,
    load_protocol,
    protocol_problems,
)

__all__ = [
    "SWEEP_DIR",
    "Axis",
    "Point",
    "Sweep",
    "is_sweep_file",
    "load_sweep",
    "point_token",
    "split_point_token",
]

SWEEP_DIR = PROTOCOL_DIR / "sweeps"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}")
_LABEL = re.compile(r"[A-Za-z0-9+-][A-Za-z0-9._=+-]{0,63}")
_TOP = {"sweep", "set", "axis"}
_SWEEP_KEYS = {"name", "description", "base"}
_AXIS_KEYS = {"key", "values", "labels", "x", "title"}
_MAX_POINTS = 256  # far above any sweep a machine runs; a typo'd product is refused
# keys a sweep may not vary: they are the point's identity, not an experimental setting
_FIXED = {"name", "description"}


@dataclass(frozen=True)
class Axis:
    """One swept protocol key: its values and a short label for each (the point names)."""

    key: str
    values: tuple[Any, ...]
    labels: tuple[str, ...]
    x: tuple[float, ...] | None = None  # where the figures plot each value (None: in order)
    title: str = ""  # the figures' axis title ("": the key)

    @property
    def short(self) -> str:
        """The key's field name (``models.receiver`` -> ``receiver``)."""
        return self.key.rpartition(".")[2]


@dataclass(frozen=True)
class Point:
    """One protocol of a sweep: its label, its coordinate on each axis and the protocol."""

    sweep: str
    label: str
    coords: tuple[tuple[str, Any], ...]  # (axis key, value), in axis order
    protocol: Protocol

    @property
    def name(self) -> str:
        """The point's source name: ``<sweep>/<label>``."""
        return f"{self.sweep}/{self.label}"

    def value(self, key: str) -> Any:
        return dict(self.coords)[key]


@dataclass(frozen=True)
class Sweep:
    """A loaded, checked sweep file."""

    name: str
    description: str
    path: Path
    base: Protocol
    fixed: tuple[tuple[str, Any], ...]
    axes: tuple[Axis, ...]
    points: tuple[Point, ...]

    def point(self, label: str) -> Point:
        for p in self.points:
            if p.label == label:
                return p
        raise HarnessError(
            f"sweep {self.name} has no point {label!r}",
            f"its points: {', '.join(p.label for p in self.points)}",
        )


def point_token(sweep_path: str | Path, label: str) -> str:
    """The ``--source`` token of one point: ``PATH.toml#label``."""
    return f"{Path(sweep_path).resolve()}#{label}"


def split_point_token(token: str) -> tuple[Path, str] | None:
    """``(sweep path, label)`` for a point token, else None."""
    path, sep, label = token.rpartition("#")
    if not sep or not path.endswith(".toml") or not label:
        return None
    return Path(path), label


def is_sweep_file(token: str | Path) -> bool:
    """True for a TOML file whose top level holds a ``[sweep]`` table (a protocol has none)."""
    path = Path(token)
    if path.suffix != ".toml" or not path.is_file():
        return False
    try:
        data = tomllib.loads(read_text_bounded(path, "sweep", limit=4 << 20))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError, HarnessError):
        return False
    return isinstance(data.get("sweep"), dict)


def _default_label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(_default_label(v) for v in value) or "none"
    text = str(value)
    if "/" in text or "\\" in text:
        text = Path(text).name or text
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", text).strip("-") or "x"


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _field(key: str, where: str) -> tuple[str, str, Any]:
    """(section, field, type) of a dotted protocol key, or a one-line error naming it."""
    section, _, name = key.partition(".")
    if key in _FIXED:
        raise HarnessError(
            f"{where}: {key!r} cannot be swept (it names the protocol)",
            "sweep a setting; points are named <sweep>/<label>",
        )
    cls = _SECTIONS.get(section)
    fields = {f.name for f in dataclasses.fields(cls)} if cls else set()
    if cls is None or name not in fields:
        allowed = (
            f"allowed keys in [{section}]: {', '.join(sorted(fields))}"
            if cls
            else f"a dotted key: one of {', '.join(sorted(_SECTIONS))}, then '.' and a field"
        )
        raise HarnessError(f"{where}: unknown protocol key {key!r}", allowed)
    return section, name, typing.get_type_hints(cls)[name]


def _with(proto: Protocol, key: str, value: Any, where: str) -> Protocol:
    section, name, annotation = _field(key, where)
    try:
        coerced = _coerce(value, annotation, key)
    except HarnessError as exc:
        raise HarnessError(f"{where}: {exc.what}", "give a value of the key's type") from None
    new = dataclasses.replace(getattr(proto, section), **{name: coerced})
    return dataclasses.replace(proto, **{section: new})


def _table(data: dict[str, Any], key: str, allowed: set[str], where: str) -> dict[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise HarnessError(f"{where}: [{key}] must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HarnessError(
            f"{where}: unknown key {key}.{unknown[0]}", f"allowed: {', '.join(sorted(allowed))}"
        )
    return table


def _axes(data: dict[str, Any], where: str) -> tuple[Axis, ...]:
    raw = data.get("axis")
    if not isinstance(raw, list) or not raw:
        raise HarnessError(
            f"{where}: no [[axis]] table", "add one: key = 'models.relative_depth', values = [...]"
        )
    axes = []
    for i, table in enumerate(raw):
        at = f"{where} axis {i + 1}"
        if not isinstance(table, dict):
            raise HarnessError(f"{at} must be a table")
        unknown = sorted(set(table) - _AXIS_KEYS)
        if unknown:
            raise HarnessError(
                f"{at}: unknown key {unknown[0]!r}", f"allowed: {', '.join(sorted(_AXIS_KEYS))}"
            )
        key, values = table.get("key"), table.get("values")
        if not isinstance(key, str):
            raise HarnessError(f"{at}: key must be a dotted protocol key (a string)")
        _field(key, at)
        if not isinstance(values, list) or not values:
            raise HarnessError(f"{at} ({key}): values must be a non-empty list")
        labels = table.get("labels")
        if labels is None:
            labels = [_default_label(v) for v in values]
        elif not isinstance(labels, list) or len(labels) != len(values):
            raise HarnessError(
                f"{at} ({key}): labels must be a list of {len(values)} names, one per value"
            )
        for label in labels:
            if not isinstance(label, str) or not _LABEL.fullmatch(label):
                raise HarnessError(
                    f"{at} ({key}): label {label!r} is not a plain name",
                    "letters, digits, '.', '_', '=', '+' or '-', at most 64",
                )
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise HarnessError(f"{at} ({key}): label {dup[0]!r} names two values", "give labels")
        x = table.get("x")
        if x is None and all(_number(v) for v in values):
            x = values
        if x is not None and (
            not isinstance(x, list) or len(x) != len(values) or not all(_number(v) for v in x)
        ):
            raise HarnessError(f"{at} ({key}): x must be a list of {len(values)} finite numbers")
        title = table.get("title", key)
        if not isinstance(title, str):
            raise HarnessError(f"{at} ({key}): title must be a string")
        xs = tuple(float(v) for v in x) if x is not None else None
        axes.append(Axis(key, tuple(values), tuple(labels), xs, title))
    keys = [a.key for a in axes]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise HarnessError(f"{where}: axis {dup[0]!r} is given twice", "merge its values")
    return tuple(axes)


def _label(axes: tuple[Axis, ...], labels: tuple[str, ...]) -> str:
    if len(axes) == 1:
        return labels[0]
    shorts = [a.short for a in axes]
    names = [a.short if shorts.count(a.short) == 1 else a.key for a in axes]
    return "_".join(f"{n}={lab}" for n, lab in zip(names, labels, strict=True))


def load_sweep(path: str | Path) -> Sweep:
    """Load a sweep file, expand its points and check every one against the protocol's rules
    (one-line :class:`HarnessError` naming the point and the rule, before any work)."""
    path = Path(path).expanduser()
    if not path.is_file() and not str(path).endswith(".toml"):
        path = SWEEP_DIR / f"{path}.toml"
    if not path.is_file():
        raise HarnessError(f"sweep file {path} not found", "give a path to a sweep .toml")
    path = path.resolve()
    where = f"sweep {path}"
    try:
        data = tomllib.loads(read_text_bounded(path, "sweep", limit=4 << 20))
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"malformed {where}: {exc}", "fix the TOML syntax") from None
    except UnicodeDecodeError:
        raise HarnessError(f"{where} is not UTF-8 text", "save the file as UTF-8") from None
    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise HarnessError(
            f"{where}: unknown key {unknown[0]!r}", "allowed: [sweep], [set], [[axis]]"
        )
    head = _table(data, "sweep", _SWEEP_KEYS, where)
    name, base = head.get("name"), head.get("base")
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise HarnessError(
            f"{where}: sweep.name = {name!r} is not a plain name",
            "at most 48 letters, digits, '.', '_' or '-' (it names out/<name>/ and sources)",
        )
    if not isinstance(base, str) or not base:
        raise HarnessError(
            f"{where}: sweep.base must name a protocol", "e.g. base = '../mini.toml'"
        )
    base_proto = load_protocol(path.parent / base if base.endswith(".toml") else base)
    fixed: tuple[tuple[str, Any], ...] = ()
    if "set" in data:
        table = data["set"]
        if not isinstance(table, dict):
            raise HarnessError(f"{where}: [set] must be a table of dotted protocol keys")
        fixed = tuple(table.items())
    proto = base_proto
    for key, value in fixed:
        proto = _with(proto, key, value, f"{where} [set]")
    axes = _axes(data, where)
    swept = {a.key for a in axes} & {k for k, _ in fixed}
    if swept:
        raise HarnessError(f"{where}: {sorted(swept)[0]!r} is both set and swept", "keep one")
    n = math.prod(len(a.values) for a in axes)
    if n > _MAX_POINTS:
        raise HarnessError(f"{where}: {n} points, more than {_MAX_POINTS}", "split the sweep")
    points: list[Point] = []
    seen: dict[str, str] = {}
    for combo in itertools.product(*(range(len(a.values)) for a in axes)):
        label = _label(axes, tuple(a.labels[i] for a, i in zip(axes, combo, strict=True)))
        coords = tuple((a.key, a.values[i]) for a, i in zip(axes, combo, strict=True))
        at = f"sweep {name} point {label}"
        p = proto
        for key, value in coords:
            p = _with(p, key, value, at)
        problems = protocol_problems(p)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise HarnessError(
                f"{at}: {problems[0]}{more}", f"correct the axis value in {path.name}"
            )
        if p.hash in seen:
            raise HarnessError(
                f"{at} is the same protocol as point {seen[p.hash]}", "drop the repeated value"
            )
        seen[p.hash] = label
        points.append(Point(name, label, coords, p))
    return Sweep(
        name,
        str(head.get("description", "")),
        path,
        base_proto,
        fixed,
        axes,
        tuple(points),
    )
