"""A sweep point's work, as both engines see it (:mod:`harness.sweep.engine`): its grid
split into units of jobs that share a translator, the check that it can run here, whether
its cache entry is sealed, running one unit into the entry and sealing it. Torch is imported
only by the runner, inside :func:`run_unit`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import events
from harness.errors import HarnessError
from harness.spec.jobs import GROUPS
from harness.spec.jobs import jobs as grid_jobs
from harness.spec.sweep import Point, load_sweep

__all__ = [
    "PointOutcome",
    "Unit",
    "entry",
    "intact",
    "point_problem",
    "point_units",
    "run_unit",
    "seal_point",
]


@dataclass(frozen=True)
class Unit:
    """The jobs of one point that share a translator: one direction and one seed (``None``:
    the deterministic conditions, which fit none)."""

    direction: str
    seed: int | None
    conditions: tuple[str, ...]
    files: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.direction}-{'deterministic' if self.seed is None else f'seed{self.seed}'}"


def point_units(point: Point) -> list[Unit]:
    """The point's whole grid (primary, strict, extension and appendix files: what a claims
    run computes, :func:`harness.sources.runner_compute`) split into units (:class:`Unit`)."""
    groups: dict[tuple[str, int | None], list[Any]] = {}
    for job in grid_jobs(point.protocol, GROUPS):
        groups.setdefault((job.direction, job.seed), []).append(job)
    return [
        Unit(d, s, tuple(dict.fromkeys(j.condition for j in js)), tuple(j.filename for j in js))
        for (d, s), js in groups.items()
    ]


@dataclass
class PointOutcome:
    """What a sweep run did with one point."""

    label: str
    status: str  # "sealed" (reused), "computed", "unavailable", "failed"
    detail: str = ""
    seconds: float = 0.0
    files_computed: int = 0
    units: int = 0
    results: Path | None = None

    def line(self) -> str:
        what = {
            "sealed": "sealed, reused (nothing computed)",
            "computed": f"computed {self.files_computed} result files"
            + (f" in {self.units} tasks" if self.units else "")
            + f", {self.seconds:.1f} s",
            "unavailable": f"skipped: {self.detail}",
            "failed": f"FAILED: {self.detail}",
        }[self.status]
        return f"  {self.label}: {what}"


def entry(point: Point) -> tuple[str, Path]:
    from harness.sources import entry_root
    from harness.sweep import cache_name

    name = cache_name(point)
    return name, entry_root(name, point.protocol) / "results"


class _Unsealed(Exception):
    pass


def intact(point: Point) -> bool:
    """True when the point's cache entry is sealed and its files match the manifest (a
    corrupt entry is unsealed by the store, its damaged files deleted, and False returned)."""
    from harness.sources import cached_results

    name, _ = entry(point)

    def probe(_: Path) -> object:
        raise _Unsealed

    try:
        cached_results(name, point.protocol, probe)
    except _Unsealed:
        return False
    return True


def seal_point(point: Point, eval_path: Path) -> Path:
    """Validate and seal a point whose every result file is in its entry (counted as one
    computation of the entry); a missing file is one line naming it."""
    from harness.sources import cached_results

    name, _ = entry(point)
    expected = [f for u in point_units(point) for f in u.files]

    def check(folder: Path) -> object:
        missing = [f for f in expected if not (folder / f).is_file()]
        if missing:
            raise HarnessError(
                f"point {point.label}: {len(missing)} result files missing after the run "
                f"({', '.join(missing[:3])})",
                "re-run the sweep (finished files are kept)",
            )
        return None

    return cached_results(name, point.protocol, check, eval_path=eval_path)


def point_problem(point: Point, artifact: str | None = None) -> tuple[str | None, Path | None]:
    """(why the point cannot run here, or None; its eval file)."""
    from harness.sources import weights_problem

    problem = weights_problem(point.protocol)
    if problem:
        return problem, None
    try:
        eval_path = point.protocol.eval_path(artifact)
    except HarnessError as exc:
        return f"needs its eval set: {exc.what}", None
    if not eval_path.is_file():
        return f"eval set {eval_path} not found", None
    return None, eval_path


def run_unit(
    sweep_path: str,
    label: str,
    protocol_hash: str,
    unit: Unit,
    *,
    device: str = "cpu",
    threads: int | None = None,
    artifact: str | None = None,
    cache_dir: str | None = None,
) -> dict[str, bytes]:
    """Run one unit of one point into the point's cache entry (as this process sees the
    cache: ``cache_dir``, else ``$HARNESS_CACHE``, else the checkout's); returns its result
    files' bytes by name. The sweep is loaded here, and refused if the point's protocol hash
    is not the driver's (another checkout or sweep file on this node)."""
    if cache_dir:
        os.environ["HARNESS_CACHE"] = cache_dir
    from harness.run.runner import RunOptions, run_protocol

    point = load_sweep(sweep_path).point(label)
    if point.protocol.hash != protocol_hash:
        raise HarnessError(
            f"point {label} of {sweep_path} has protocol hash {point.protocol.hash} here, "
            f"{protocol_hash} on the driver",
            "give every node the same checkout and sweep file (a shared filesystem)",
        )
    _, results = entry(point)
    key = f"{protocol_hash}:{unit.key}"
    events.record("sweep_unit_start", key=key)
    options = RunOptions(
        device=device,
        conditions=unit.conditions,
        seeds=None if unit.seed is None else (unit.seed,),
        directions=(unit.direction,),
        threads=threads,
        progress=False,
        artifact=artifact,
        share_jobs=True,
    )
    run_protocol(point.protocol, results, options)
    events.record("sweep_unit_done", key=key)
    return {name: (results / name).read_bytes() for name in unit.files}
