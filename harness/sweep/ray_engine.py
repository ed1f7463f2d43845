"""The ``ray`` engine of :func:`harness.sweep.engine.run_sweep`: a sweep's units as Ray tasks.

The driver checks every point first (absent weights or eval set: skipped with the reason;
sealed and intact: reused), then submits one task per :class:`~harness.sweep.engine.Unit` of
every remaining point, each requesting ``num_cpus`` (and ``num_gpus=1`` on ``cuda``) and
retried by Ray when its worker or node dies (``max_retries``). A retried unit resumes: the
runner keeps every result file already written to the entry, so only what was lost is
recomputed. As each task returns, the driver writes the result files its own cache lacks
(none, on storage the workers share) and, once a point's units are all back, validates and
seals the point in the driver's cache.

Ray is an optional extra (``pip install .[ray]``): imported only here.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_write_bytes
from harness.spec.sweep import Point, Sweep
from harness.sweep.units import (
    PointOutcome,
    entry,
    intact,
    point_problem,
    point_units,
    run_unit,
    seal_point,
)

__all__ = ["MAX_RETRIES", "run_on_ray"]

log = logging.getLogger(__name__)

MAX_RETRIES = 3  # a unit is retried this often when its worker process or node dies


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise HarnessError(
            "the ray engine needs Ray, which is not installed",
            "pip install '.[ray]' (or use --engine local)",
        ) from None
    return ray


def run_on_ray(
    sweep: Sweep,
    *,
    address: str | None,
    device: str,
    cpus_per_task: int,
    worker_cache: str | None,
    artifact: str | None,
    on_point: Callable[[PointOutcome], None] | None = None,
) -> list[PointOutcome]:
    """Run ``sweep``'s points on the Ray cluster at ``address`` (see the module doc)."""
    ray = _ray()
    if cpus_per_task < 1:
        raise HarnessError(f"--cpus-per-task must be at least 1, got {cpus_per_task}")
    outcomes: dict[str, PointOutcome] = {}
    todo: list[tuple[Point, Path]] = []
    for point in sweep.points:
        problem, eval_path = point_problem(point, artifact)
        if problem:
            outcomes[point.label] = PointOutcome(point.label, "unavailable", problem)
        elif intact(point):
            outcomes[point.label] = PointOutcome(point.label, "sealed", results=entry(point)[1])
        else:
            assert eval_path is not None
            todo.append((point, eval_path))
    for label in [p.label for p in sweep.points if p.label in outcomes]:
        if on_point:
            on_point(outcomes[label])
    if todo:
        address = address or os.environ.get("RAY_ADDRESS") or None
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        try:
            _run_points(ray, sweep, todo, device, cpus_per_task, worker_cache, artifact,
                        outcomes, on_point)  # fmt: skip
        finally:
            if started_here:
                ray.shutdown()
    return [outcomes[p.label] for p in sweep.points]


def _run_points(
    ray: Any,
    sweep: Sweep,
    todo: list[tuple[Point, Path]],
    device: str,
    cpus: int,
    worker_cache: str | None,
    artifact: str | None,
    outcomes: dict[str, PointOutcome],
    on_point: Callable[[PointOutcome], None] | None,
) -> None:
    task = ray.remote(run_unit).options(
        num_cpus=cpus,
        num_gpus=1 if device == "cuda" else 0,
        max_retries=MAX_RETRIES,
        retry_exceptions=False,  # a harness error is an answer, not a lost worker
    )
    pending: dict[Any, Point] = {}
    left: dict[str, int] = {}
    start: dict[str, float] = {}
    before: dict[str, int] = {}
    failed: dict[str, str] = {}
    for point, _ in todo:
        units = point_units(point)
        left[point.label] = len(units)
        start[point.label] = time.perf_counter()
        _, results = entry(point)
        before[point.label] = sum(1 for u in units for f in u.files if (results / f).is_file())
        for unit in units:
            ref = task.remote(
                str(sweep.path),
                point.label,
                point.protocol.hash,
                unit,
                device=device,
                threads=cpus,
                artifact=artifact,
                cache_dir=worker_cache,
            )
            pending[ref] = point
    evals = {p.label: e for p, e in todo}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        point = pending.pop(ready[0])
        _, results = entry(point)
        try:
            files: dict[str, bytes] = ray.get(ready[0])
            for name, data in files.items():
                if not (results / name).is_file():  # storage not shared with the worker
                    atomic_write_bytes(results / name, data)
        except Exception as exc:  # a unit that failed on its own terms, or gave up retrying
            failed.setdefault(point.label, _reason(exc))
        left[point.label] -= 1
        if left[point.label]:
            continue
        label = point.label
        units = point_units(point)
        outcome = PointOutcome(label, "computed", units=len(units))
        outcome.files_computed = (
            sum(1 for u in units for f in u.files if (results / f).is_file()) - before[label]
        )
        try:
            if label in failed:
                raise HarnessError(failed[label])
            outcome.results = seal_point(point, evals[label])
        except HarnessError as exc:
            outcome.status, outcome.detail = "failed", exc.what
        outcome.seconds = time.perf_counter() - start[label]
        outcomes[label] = outcome
        if on_point:
            on_point(outcome)


def _reason(exc: BaseException) -> str:
    """A task's error in one line (Ray wraps the remote one; its cause names it)."""
    cause = getattr(exc, "cause", None)
    inner = cause if isinstance(cause, BaseException) else exc
    if isinstance(inner, HarnessError):
        return inner.what
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}"
