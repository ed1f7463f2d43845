"""The result store: each runner source's result folder, computed at most once per protocol
hash and weights fingerprint into an on-disk cache under a file lock, sealed by a manifest of
SHA-256s, and every fill counted (``computations.jsonl``), so every pytest-xdist worker and
every later run reuses it."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from harness.analysis.validate import validate
from harness.errors import HarnessError
from harness.io import atomic_write_json, cache_root, sha256_file
from harness.protocol import Protocol

__all__ = [
    "cache_root",
    "cached_results",
    "computation_count",
    "entry_root",
    "sealed_results",
    "weights_fingerprint",
]

log = logging.getLogger(__name__)


def weights_fingerprint(protocol: Protocol) -> str:
    """Short hash of what the protocol's model names point at (the cache entry's key); one
    home with the run folder's fingerprints: :func:`harness.run.inputs.weights_fingerprint`."""
    from harness.run.inputs import weights_fingerprint as fingerprint

    return fingerprint(protocol)


def entry_root(name: str, protocol: Protocol) -> Path:
    """The cache entry of ``protocol`` for source ``name``: ``cache_root()/name/<protocol
    hash>-<weights fingerprint>[-<training file hash>]``
    (:func:`harness.run.inputs.source_fingerprint`)."""
    from harness.run.inputs import source_fingerprint

    return cache_root() / name / f"{protocol.hash}-{source_fingerprint(protocol)}"


def sealed_results(name: str, protocol: Protocol) -> Path | None:
    """The entry's result folder if it is complete (computed and sealed), else None; never
    computes and never checks the manifest (:func:`cached_results` does)."""
    root = entry_root(name, protocol)
    return root / "results" if (root / "complete.json").is_file() else None


def _manifest(results: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(results.glob("*.json"))}


def cached_results(
    name: str,
    protocol: Protocol,
    compute: Callable[[Path], object],
    *,
    eval_path: Path | None = None,
) -> Path:
    """The result folder of ``protocol`` for source ``name``, computing it at most once.

    The folder lives under :func:`entry_root`, so other weights or another translator-training
    file never reuse a sealed entry. ``compute(results_dir)`` runs under a file lock (so
    concurrent xdist workers and processes wait for the first one), unless it is marked
    ``shared`` (the runner's, see :func:`harness.sources.registry.runner_compute`): then every
    process that finds the entry empty runs it on the same folder at once, the runner
    splitting the result files between them, and the lock only guards the check and the seal.
    Its output must pass the validator, and a ``complete.json`` manifest with every file's
    SHA-256 is written last. A hit re-checks the manifest: a corrupt or missing entry is
    recomputed (the runner resumes, so only the damaged files are redone).
    """
    from filelock import FileLock

    root = entry_root(name, protocol)
    results = root / "results"
    done = root / "complete.json"
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / ".lock"))
    t0 = time.perf_counter()
    with lock:
        if _sealed(root, results, done):
            return results
    if getattr(compute, "shared", False):
        compute(results)  # alongside any other process filling the same entry
    with lock:
        if _sealed(root, results, done):  # another process finished and sealed it meanwhile
            return results
        compute(results)  # all of it, or (shared) whatever no process has finished
        report = validate([results], protocol, include_strict=True, eval_path=eval_path)
        if not report.blocking_passed:
            bad = "; ".join(f"{c.name}: {c.detail}" for c in report.failures())
            raise HarnessError(
                f"{name} results in {results} fail validation: {bad}", f"delete {root} and re-run"
            )
        atomic_write_json(
            done,
            {
                "protocol": protocol.name,
                "protocol_hash": protocol.hash,
                "seconds": round(time.perf_counter() - t0, 2),
                "files": _manifest(results),
            },
        )
        _count_computation(name, protocol.hash)
    return results


def _sealed(root: Path, results: Path, done: Path) -> bool:
    """True for a complete entry whose files match its manifest; a corrupt one is unsealed
    (the mismatched files deleted, the manifest removed) and False returned."""
    if not done.is_file():
        return False
    try:
        recorded = json.loads(done.read_text(encoding="utf-8"))["files"]
    except (json.JSONDecodeError, KeyError, OSError):
        recorded = None
    current = _manifest(results)
    if recorded is not None and recorded == current:
        return True
    bad = sorted(
        k for k in set(recorded or {}) | set(current) if (recorded or {}).get(k) != current.get(k)
    )
    log.warning("cache entry %s is corrupt (%s); recomputing", root, ", ".join(bad[:3]))
    for fname in bad:
        (results / fname).unlink(missing_ok=True)
    done.unlink()
    return False


def _count_computation(name: str, phash: str) -> None:
    """Append one line per cache fill to ``computations.jsonl`` (how warm runs are counted)."""
    line = json.dumps(
        {"source": name, "protocol_hash": phash, "time": time.time(), "pid": os.getpid()}
    )
    with open(cache_root() / "computations.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def computation_count(name: str | None = None) -> int:
    """How many times a cache entry was computed (optionally for one source)."""
    path = cache_root() / "computations.jsonl"
    if not path.is_file():
        return 0
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return sum(1 for r in rows if name is None or r["source"] == name)
