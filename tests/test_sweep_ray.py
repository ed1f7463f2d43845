"""The Ray engine of a sweep (issue #29) on a real Ray cluster started on this machine: a
head and a worker node, each its own ``ray start`` process joined by address, the sweep's
driver a ``python -m harness sweep run --engine ray --address ...`` process of its own.

Shown: the results equal a local run file for file (predictions and every per-row field;
timings and provenance aside), a sealed point is reused, and killing the worker node while it
runs a unit loses nothing: the unit is retried on the head, every result file is written
exactly once across both nodes, and each point is sealed once."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

from tests.helpers import ROOT  # noqa: E402
from tests.model_fixtures import write_tiny_depth_sweep  # noqa: E402

PYTHON = sys.executable
RAY = str(Path(sys.executable).with_name("ray"))
# Two points of three seeds: each point's grid is four units (the deterministic files and one
# per seed), eight Ray tasks in all, for two one-CPU nodes.
SEEDS = (42, 123, 456)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _session_pids(sid: int) -> set[int]:
    """The processes of a session: one node started by one ``ray start --block`` (its
    raylet and, each in a process group of its own, its worker processes)."""
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True)
    pids = set()
    for line in out.stdout.splitlines():
        pid, session = line.split()
        if int(session) == sid:
            pids.add(int(pid))
    return pids


def _kill_node(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process of the node ``proc`` started (its session), nothing else."""
    for pid in _session_pids(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one node this test started: ``ray start --block`` ends its node on SIGTERM; what
    is left of its session after that is killed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    _kill_node(proc)
    proc.wait(timeout=10)


class Cluster:
    """A head and one worker node, each one ``ray start --block`` in its own process group
    (so ending a node ends exactly the processes it started; ``ray stop`` would end every
    Ray process of the user on this machine)."""

    def __init__(self, tmp: Path, events: Path) -> None:
        self.tmp = tmp
        self.events = events  # every node's workers append their events here
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "HARNESS_EVENTS": str(events), "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        common = ["--num-cpus=1", "--disable-usage-stats", "--block"]
        self.head = self._start(
            "head",
            [
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                f"--temp-dir={tmp}",
                *common,
            ],
        )
        self._wait_nodes(1)
        self.worker = self._start("worker", [f"--address={self.address}", *common])
        self._wait_nodes(2)

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the node
        return subprocess.Popen(
            [RAY, "start", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def _wait_nodes(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = subprocess.run(
                [RAY, "status", f"--address={self.address}"],
                capture_output=True, text=True, env=self.env,
            )  # fmt: skip
            if r.returncode == 0 and r.stdout.count(" node_") >= n:
                return
            time.sleep(0.5)
        raise AssertionError(f"the Ray cluster did not reach {n} nodes in {timeout} s")

    def stop(self) -> None:
        _stop(self.worker)
        _stop(self.head)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny two-point sweep (two depths of a tiny pair) and its local run, in a cache of
    its own."""
    d = tmp_path_factory.mktemp("sweep_ray")
    sweep = write_tiny_depth_sweep(d, "raydepth", seeds=SEEDS)
    local = d / "cache-local"
    r = _sweep_run(sweep, local, d / "events-local.jsonl", "--engine", "local")
    assert r.returncode == 0, r.stdout + r.stderr
    return {"dir": d, "sweep": sweep, "local": local}


@pytest.fixture(scope="module")
def cluster(experiment: dict[str, Path]) -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    c = Cluster(tmp, experiment["dir"] / "events-ray.jsonl")
    try:
        yield c
    finally:
        c.stop()


def _sweep_run(sweep: Path, cache: Path, events: Path, *args: str, wait: bool = True) -> Any:
    env = {**os.environ, "HARNESS_CACHE": str(cache), "HARNESS_EVENTS": str(events)}
    env.pop("RAY_ADDRESS", None)
    cmd = [PYTHON, "-m", "harness", "sweep", "run", str(sweep), *args]
    if wait:
        return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    return subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


_VOLATILE = {"created_at", "elapsed_sec", "provenance", "fit_seconds"}


def _content(value: Any) -> Any:
    """A result file's content without what depends on when and how fast it ran."""
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value


def _entries(cache: Path) -> dict[str, dict[str, Any]]:
    """cache entry -> {result file name -> content}; every entry must be sealed."""
    out = {}
    for done in sorted(cache.glob("*/*/complete.json")):
        results = done.parent / "results"
        out[done.parent.name] = {
            p.name: _content(json.loads(p.read_text(encoding="utf-8")))
            for p in sorted(results.glob("h1_*.json"))
        }
    return out


def _assert_equal_to_local(cache: Path, local: Path) -> None:
    ours, theirs = _entries(cache), _entries(local)
    assert len(theirs) == 2 and sorted(ours) == sorted(theirs)  # same points, same entries
    for entry, files in theirs.items():
        assert sorted(ours[entry]) == sorted(files) and len(files) == 3 + 6 * len(SEEDS)
        for name, content in files.items():
            assert ours[entry][name]["per_sample"] == content["per_sample"], (entry, name)
            assert ours[entry][name] == content, (entry, name)


def _computations(cache: Path) -> int:
    path = cache / "computations.jsonl"
    return len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0


def test_ray_sweep_equals_a_local_run_file_for_file_and_reuses_sealed_points(
    experiment: dict[str, Path], cluster: Cluster
) -> None:
    cache, events = experiment["dir"] / "cache-ray", experiment["dir"] / "events-ray1.jsonl"
    args = ("--engine", "ray", "--address", cluster.address, "--worker-cache", str(cache))
    r = _sweep_run(experiment["sweep"], cache, events, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("computed 21 result files in 4 tasks") == 2, r.stdout
    _assert_equal_to_local(cache, experiment["local"])
    assert _computations(cache) == 2  # each point sealed once
    # the eight units ran as eight tasks, in more than one worker process
    starts = [e for e in _events(cluster.events) if e["kind"] == "sweep_unit_start"]
    assert len(starts) == 8 and len({e["pid"] for e in starts}) >= 2
    # again: both points are sealed and reused, nothing is computed, no task is submitted
    before = len(_events(cluster.events))
    r = _sweep_run(experiment["sweep"], cache, events, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("sealed, reused (nothing computed)") == 2, r.stdout
    assert _computations(cache) == 2 and len(_events(cluster.events)) == before


def test_killing_the_worker_node_mid_sweep_loses_nothing_and_recomputes_only_what_was_lost(
    experiment: dict[str, Path], cluster: Cluster
) -> None:
    cache = experiment["dir"] / "cache-ray-kill"
    log = cluster.events
    seen = len(_events(log))
    args = ("--engine", "ray", "--address", cluster.address, "--worker-cache", str(cache))
    driver = _sweep_run(experiment["sweep"], cache, experiment["dir"] / "ev-k.jsonl", *args,
                        wait=False)  # fmt: skip
    victim = _session_pids(cluster.worker.pid)
    killed: dict[str, Any] | None = None
    deadline = time.monotonic() + 120
    while killed is None and driver.poll() is None and time.monotonic() < deadline:
        evs = _events(log)[seen:]
        done = {(e["pid"], e["key"]) for e in evs if e["kind"] == "sweep_unit_done"}
        victim |= _session_pids(cluster.worker.pid)  # worker processes started since
        for e in evs:
            running = e["kind"] == "sweep_unit_start" and (e["pid"], e["key"]) not in done
            if running and e["pid"] in victim:  # a unit in flight on the worker node
                _kill_node(cluster.worker)
                killed = e
                break
        time.sleep(0.01)
    out, _ = driver.communicate(timeout=300)
    assert killed is not None, "no unit was seen in flight on the worker node:\n" + out
    assert cluster.worker.wait(timeout=10) is not None  # the node is gone
    assert driver.returncode == 0, out
    assert out.count("computed 21 result files in 4 tasks") == 2, out
    evs = _events(log)[seen:]
    # the lost unit was retried on the head and finished there
    retried = [e for e in evs if e["key"] == killed["key"] and e["pid"] not in victim]
    assert [e["kind"] for e in retried] == ["sweep_unit_start", "sweep_unit_done"]
    assert not any(
        e["kind"] == "sweep_unit_done" and (e["pid"], e["key"]) == (killed["pid"], killed["key"])
        for e in evs
    )
    # nothing that was finished was computed again: every result file, every capture and
    # every translator of both points was computed exactly once, over both nodes
    files = Counter(e["key"] for e in evs if e["kind"] == "result_file")
    assert sorted(files.values()) == [1] * 42
    for kind in ("activations", "translator"):
        ours = Counter(e["key"] for e in evs if e["kind"] == kind)
        assert ours and set(ours.values()) == {1}, (kind, ours)
    assert _computations(cache) == 2  # each point sealed once
    _assert_equal_to_local(cache, experiment["local"])
