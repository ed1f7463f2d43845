"""Running a sweep's points into the result store: locally, or on a Ray cluster (issue #29).

Both engines fill the same cache entries as ``pytest claims --source SWEEP.toml`` would
(:func:`harness.sweep.cache_name`, :func:`harness.sources.entry_root`), sealed by the same
manifest, so the claims then read every point like any other source, and a point two sweeps
share is computed once. A point whose weights or eval set are absent is skipped with the
reason (:class:`~harness.sources.SourceUnavailable`); a sealed point is reused, never
recomputed.

- ``local``: the points one after another in this process (the runner's own threads), or
  split over several devices (``devices=("cuda:0", "cuda:1")``), one process per device.
- ``ray`` (:mod:`harness.sweep.ray_engine`): each point's grid split into *units*
  (:mod:`harness.sweep.units`), the jobs of one direction that share a translator (one
  seed's files, or the deterministic ones), each unit one Ray task requesting its CPUs (and
  a GPU on ``cuda``). A unit runs the
  runner into the point's entry with ``share_jobs``: its captures come from the entry's
  locked activation cache and its translators are fitted by it alone, so on shared storage
  every capture and translator is computed once for the whole cluster. A task returns its
  result files to the driver, which writes those it lacks and seals the point: results
  arrive whether or not the workers share the driver's storage.

Torch is imported only by the runner, inside a unit.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.spec.sweep import Point, Sweep, load_sweep, point_token
from harness.sweep.units import PointOutcome, entry, intact, point_problem, point_units

__all__ = ["ENGINES", "SweepRun", "bench_sweep", "run_sweep"]

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass
class SweepRun:
    """The outcome of :func:`run_sweep`: one :class:`PointOutcome` per point, in order."""

    sweep: Sweep
    engine: str
    outcomes: list[PointOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[PointOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def lines(self) -> list[str]:
        head = f"sweep {self.sweep.name}, engine {self.engine}: {self.seconds:.1f} s"
        return [head, *(o.line() for o in self.outcomes)]


def _count_files(results: Path, point: Point) -> int:
    return sum(1 for u in point_units(point) for f in u.files if (results / f).is_file())


def _run_local_point(
    sweep_path: str, point: Point, device: str, artifact: str | None
) -> PointOutcome:
    from harness.sources import SourceUnavailable
    from harness.sweep import load_point_source

    t0 = time.perf_counter()
    problem, _ = point_problem(point, artifact)
    if problem:
        return PointOutcome(point.label, "unavailable", problem)
    if intact(point):
        return PointOutcome(point.label, "sealed", results=entry(point)[1])
    _, results = entry(point)
    before = _count_files(results, point)
    try:
        load_point_source(point_token(sweep_path, point.label), artifact=artifact, device=device)
    except SourceUnavailable as exc:
        return PointOutcome(point.label, "unavailable", str(exc))
    except HarnessError as exc:
        return PointOutcome(point.label, "failed", exc.what)
    return PointOutcome(
        point.label,
        "computed",
        seconds=time.perf_counter() - t0,
        files_computed=_count_files(results, point) - before,
        results=results,
    )


def _local_points(
    sweep_path: str, labels: Sequence[str], device: str, artifact: str | None
) -> list[PointOutcome]:
    """Some points of a sweep, one after another, on ``device`` (a process of its own when
    the sweep is split over devices)."""
    sweep = load_sweep(sweep_path)
    return [_run_local_point(sweep_path, sweep.point(label), device, artifact) for label in labels]


def run_sweep(
    sweep: Sweep | str,
    *,
    engine: str = "local",
    devices: Sequence[str] = ("cpu",),
    address: str | None = None,
    cpus_per_task: int = 1,
    worker_cache: str | None = None,
    artifact: str | None = None,
    on_point: Callable[[PointOutcome], None] | None = None,
) -> SweepRun:
    """Compute every point of ``sweep`` into the result store (see the module doc).

    ``devices``: local: the points run one after another on one device, or split round-robin
    over several, one process each; ray: ``cpu`` or ``cuda`` (each task then requests one
    GPU). ``address``: the Ray cluster (None: ``$RAY_ADDRESS``, else a cluster started on
    this machine, else a new local one). ``worker_cache``: the cache root the Ray tasks use
    (None: each worker's own ``$HARNESS_CACHE``). ``on_point``: called as each point ends."""
    if engine not in ENGINES:
        raise HarnessError(f"unknown engine {engine!r}", f"use one of: {', '.join(ENGINES)}")
    sw = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
    t0 = time.perf_counter()
    run = SweepRun(sw, engine)
    if engine == "ray":
        from harness.sweep.ray_engine import run_on_ray

        if len(devices) != 1 or devices[0].split(":")[0] not in ("cpu", "cuda"):
            raise HarnessError(
                f"--device {','.join(devices)}: the ray engine takes one of cpu, cuda",
                "each task requests one GPU with cuda; Ray assigns it",
            )
        run.outcomes = run_on_ray(
            sw,
            address=address,
            device=devices[0].split(":")[0],
            cpus_per_task=cpus_per_task,
            worker_cache=worker_cache,
            artifact=artifact,
            on_point=on_point,
        )
    elif len(devices) <= 1:
        for point in sw.points:
            outcome = _run_local_point(
                str(sw.path), point, devices[0] if devices else "cpu", artifact
            )
            if on_point:
                on_point(outcome)
            run.outcomes.append(outcome)
    else:
        run.outcomes = _split_over_devices(sw, devices, artifact, on_point)
    run.seconds = time.perf_counter() - t0
    return run


def _split_over_devices(
    sw: Sweep,
    devices: Sequence[str],
    artifact: str | None,
    on_point: Callable[[PointOutcome], None] | None,
) -> list[PointOutcome]:
    """The points round-robin over ``devices``, one spawned process per device."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from harness.model.devices import check_device

    for d in devices:
        check_device(d)
    shares = [[p.label for p in sw.points[i :: len(devices)]] for i in range(len(devices))]
    ctx = multiprocessing.get_context("spawn")
    by_label: dict[str, PointOutcome] = {}
    with ProcessPoolExecutor(len(devices), mp_context=ctx) as pool:
        futures = [
            pool.submit(_local_points, str(sw.path), labels, device, artifact)
            for labels, device in zip(shares, devices, strict=True)
            if labels
        ]
        for fut in futures:
            for outcome in fut.result():
                by_label[outcome.label] = outcome
                if on_point:
                    on_point(outcome)
    return [by_label[p.label] for p in sw.points]


def bench_sweep(
    sweep: Sweep,
    *,
    devices: Sequence[str] = ("cpu",),
    address: str | None = None,
    cpus_per_task: int = 1,
) -> list[str]:
    """The sweep's wall time from an empty cache, locally and on the Ray cluster at
    ``address``, the same points side by side (each engine into a fresh temporary cache; the
    Ray tasks are given that cache, so its workers must share this machine's storage: a
    cluster started here, or a shared filesystem). Lines to print."""
    import shutil
    import tempfile

    saved = os.environ.get("HARNESS_CACHE")
    times: dict[str, float] = {}
    lines = [f"sweep {sweep.name}: {len(sweep.points)} points, from an empty cache each"]
    try:
        for engine in ENGINES:
            root = tempfile.mkdtemp(prefix=f"harness-bench-{engine}-")
            os.environ["HARNESS_CACHE"] = root
            try:
                run = run_sweep(
                    sweep,
                    engine=engine,
                    devices=devices,
                    address=address,
                    cpus_per_task=cpus_per_task,
                    worker_cache=root if engine == "ray" else None,
                )
            finally:
                shutil.rmtree(root, ignore_errors=True)
            if run.failed:
                raise HarnessError(f"bench: {engine} run failed: {run.failed[0].line().strip()}")
            done = sum(o.files_computed for o in run.outcomes)
            times[engine] = run.seconds
            lines.append(f"  {engine:5s} {run.seconds:8.1f} s  ({done} result files)")
    finally:
        if saved is None:
            os.environ.pop("HARNESS_CACHE", None)
        else:
            os.environ["HARNESS_CACHE"] = saved
    lines.append(f"  ray / local wall time: {times['ray'] / times['local']:.2f}")
    return lines
