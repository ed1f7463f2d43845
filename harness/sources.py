"""Result sources for the claims suite: the paper artifact, the mini pair, real Pythia.

Each source resolves to a folder of result files in the artifact schema plus the protocol
they follow. ``mini`` and ``pythia`` come from our runner; their result files are computed
once per protocol hash into an on-disk cache under a file lock, so every pytest-xdist worker
and every later run reuses them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.analysis.audit import AuditRow, audit
from harness.analysis.results import ResultSet
from harness.analysis.tables import ComparisonRow, SummaryRow, compare, summarize
from harness.analysis.validate import ValidationReport, validate
from harness.errors import HarnessError
from harness.io import atomic_write_json, sha256_file
from harness.protocol import Protocol, load_protocol
from harness.spec.jobs import expected

__all__ = [
    "REGISTRY",
    "SOURCE_NAMES",
    "Source",
    "SourceSpec",
    "SourceUnavailable",
    "cache_root",
    "cached_results",
    "computation_count",
    "load_source",
    "source_spec",
    "weights_fingerprint",
    "weights_problem",
]

log = logging.getLogger(__name__)
_REPO_ROOT = Path(__file__).resolve().parent.parent


class SourceUnavailable(Exception):
    """The source cannot be used here; ``str(exc)`` says why and how to provide it."""


def cache_root() -> Path:
    """Root of the on-disk cache (``$HARNESS_CACHE`` or ``.cache/harness`` in the checkout)."""
    return Path(os.environ.get("HARNESS_CACHE", _REPO_ROOT / ".cache" / "harness"))


@dataclass
class Source:
    """A named folder set of result files and the protocol they follow, with cached analyses."""

    name: str
    protocol: Protocol
    result_dirs: list[Path]
    eval_path: Path | None
    include_strict: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def results(self) -> ResultSet:
        return ResultSet.from_dirs(*self.result_dirs)

    @cached_property
    def summary(self) -> dict[str, SummaryRow]:
        """condition -> summary row, primary direction only."""
        return {r.condition: r for r in summarize(self.results) if r.direction == "fwd"}

    @cached_property
    def comparisons(self) -> dict[tuple[str, str], ComparisonRow]:
        """(condition, baseline) -> paired comparison on the primary metric, fwd."""
        rows = compare(self.results, stats=self.protocol.stats, directions=("fwd",))
        return {(r.condition, r.baseline): r for r in rows}

    @cached_property
    def validation(self) -> ValidationReport:
        return validate(
            self.result_dirs,
            self.protocol,
            include_strict=self.include_strict,
            eval_path=self.eval_path,
        )

    @cached_property
    def validation_main(self) -> ValidationReport:
        """The main grid only (the protocol's conditions and directions): appendix, strict and
        extension files are not read."""
        return validate(
            self.result_dirs,
            self.protocol,
            include_strict=False,
            eval_path=self.eval_path,
            only=set(expected(self.protocol)),
        )

    @cached_property
    def audit_rows(self) -> list[AuditRow]:
        return audit(
            self.results, self.protocol.audit.conditions, per_file=self.protocol.audit.per_file
        )

    def wb(self, condition: str) -> float:
        """Mean word-boundary accuracy of a condition over its runs (fwd)."""
        return self.summary[condition].means["word_boundary_contains"]

    def translator_metrics(self, kind: str = "linear") -> list[dict[str, Any]]:
        """Per-seed translator quality records carried by result files (ours only).

        ``kind``: ``linear`` (the paper's fitted translator, shared by its conditions) or a
        causal condition's name (``causal_replace``, ``causal_additive``).
        """
        seen: dict[Any, dict[str, Any]] = {}
        for f in self.results:
            t = f.raw.get("translator")
            if not isinstance(t, dict) or f.direction != "fwd":
                continue
            causal = str(t.get("method", "")).startswith("causal")
            if (kind == "linear" and not causal) or (causal and f.condition == kind):
                seen.setdefault(f.seed, t)
        return [seen[k] for k in sorted(seen, key=str)]


@dataclass(frozen=True)
class SourceSpec:
    """One row of the source registry.

    name: the source's name (claims ids, findings keys, cache folder).
    kind: ``artifact`` (the paper's published result files) or ``runner`` (our runner on the
        protocol's model pair, computed once per protocol hash into the cache).
    protocol: a protocol name under ``protocols/`` or a path to a TOML file.
    regime: its label in the regime figure (beyond the paper), if it is drawn there.
    single_thread: its runs use one thread (tiny matmuls gain nothing from a second).
    """

    name: str
    kind: str
    protocol: str
    regime: str | None = None
    single_thread: bool = False


REGISTRY: dict[str, SourceSpec] = {
    s.name: s
    for s in (
        SourceSpec("paper", "artifact", "paper"),
        SourceSpec("mini", "runner", "mini", regime="mini, shared context", single_thread=True),
        SourceSpec("pythia", "runner", "paper"),
        # beyond the paper (issues #20, #28): the withheld regime, and Ramesh & Li's own
        # identical-model setting (the receiver as its own sender, no map, context withheld)
        SourceSpec("mini-withheld", "runner", "mini-withheld", regime="mini, context withheld"),
        SourceSpec(
            "mini-control",
            "runner",
            "mini-control",
            regime="R&L identical models (receiver -> itself, withheld)",
        ),
    )
}
SOURCE_NAMES = tuple(REGISTRY)


def source_spec(token: str) -> SourceSpec:
    """A registered source name, or a protocol TOML path.

    A TOML's source is named by its protocol's ``name`` -- unless that name is a registered
    source's and the protocol is not that source's own (another hash): then the name carries
    the hash (``mini@1a2b3c4d``), so a copied protocol can never take over a registered
    source's claim column, findings or cache."""
    if token in REGISTRY:
        return REGISTRY[token]
    if token.endswith(".toml") or Path(token).is_file():
        path = Path(token).expanduser().resolve()
        if not path.is_file():
            raise SourceUnavailable(f"protocol file {token} not found")
        return SourceSpec(_toml_source_name(load_protocol(path)), "runner", str(path))
    raise HarnessError(
        f"unknown source {token!r}",
        f"use one of: {', '.join(SOURCE_NAMES)}, or a path to a protocol .toml",
    )


def _toml_source_name(proto: Protocol) -> str:
    """The source name of a protocol given as a file (see :func:`source_spec`)."""
    own = REGISTRY.get(proto.name)
    if own is None:
        return proto.name
    if own.kind == "runner" and load_protocol(own.protocol).hash == proto.hash:
        return proto.name  # the registered protocol itself, named by its path
    return f"{proto.name}@{proto.hash[:8]}"


def _paper_source(artifact: str | None) -> Source:
    from harness.spec.artifact import find_artifact

    root = find_artifact(artifact)
    if root is None:
        raise SourceUnavailable(
            "paper artifact not found (vendor/paper-artifact is missing from this checkout); "
            "restore it with git, or run 'python -m harness fetch-artifact DEST' and pass "
            "--artifact DEST"
        )
    proto = load_protocol("paper")
    dirs = [root / "results" / "final", root / "results" / "final_strict_controls"]
    return Source(
        "paper",
        proto,
        [d for d in dirs if d.is_dir()],
        proto.eval_path(root),
        meta={"artifact": str(root)},
    )


def weights_problem(protocol: Protocol) -> str | None:
    """None when both models of ``protocol`` load offline (local folders, or the Hugging Face
    cache) and the runner imports, else a message saying what is missing and how to provide it."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return "huggingface_hub is not installed"
    missing = []
    for model in (protocol.models.sender, protocol.models.receiver):
        local = protocol.resolve_path(model)
        if local.is_dir():
            lacking = [f for f in ("config.json",) if not (local / f).is_file()]
            if not any(local.glob("*.safetensors")) and not any(local.glob("*.bin")):
                lacking.append("model.safetensors")
            if lacking:
                return f"model folder {local} lacks {', '.join(lacking)}"
            continue
        if "/" in model and not model.startswith((".", "/")):
            hit = try_to_load_from_cache(model, "config.json", revision=protocol.models.revision)
            if isinstance(hit, str):
                continue
        missing.append(model)
    if missing:
        return (
            f"weights not found: {', '.join(missing)} (not a local folder, not in the Hugging "
            "Face cache); download them where a hub is reachable (huggingface-cli download "
            f"{' '.join(missing)}), or set HF_HOME to a cache that holds them"
        )
    try:
        import harness.run.runner  # noqa: F401
    except ImportError as exc:
        return f"the runner is not importable ({exc})"
    return None


def weights_fingerprint(protocol: Protocol) -> str:
    """Short hash of what the protocol's model names point at (the cache entry's key); one
    home with the run folder's fingerprints: :func:`harness.run.inputs.weights_fingerprint`."""
    from harness.run.inputs import weights_fingerprint as fingerprint

    return fingerprint(protocol)


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

    The folder lives under ``cache_root()/name/<protocol hash>-<weights fingerprint>[-<training
    file hash>]`` (:func:`harness.run.inputs.source_fingerprint`), so other weights or another
    translator-training file never reuse a sealed entry.
    ``compute(results_dir)`` runs under a file lock (so concurrent xdist workers and
    processes wait for the first one), unless it is marked ``shared`` (the runner's, see
    :func:`_runner_compute`): then every process that finds the entry empty runs it on the
    same folder at once, the runner splitting the result files between them, and the lock
    only guards the check and the seal. Its output must pass the validator, and a
    ``complete.json`` manifest with every file's SHA-256 is written last. A hit re-checks the
    manifest: a corrupt or missing entry is recomputed (the runner resumes, so only the
    damaged files are redone).
    """
    from filelock import FileLock

    from harness.run.inputs import source_fingerprint

    root = cache_root() / name / f"{protocol.hash}-{source_fingerprint(protocol)}"
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


def _runner_compute(
    name: str, protocol: Protocol, device: str, artifact: str | None = None
) -> Callable[[Path], object]:
    def compute(results: Path) -> object:
        from harness.run.runner import RunOptions, run_protocol

        # The mini pair runs single-threaded (tiny matmuls gain nothing from a second
        # thread); elsewhere one thread per xdist worker, so two workers do not thrash two
        # cores. Results do not depend on it (docs/portability.md).
        single = name in REGISTRY and REGISTRY[name].single_thread
        threads = 1 if single or os.environ.get("PYTEST_XDIST_WORKER") else None
        options = RunOptions(
            device=device,
            include_strict=True,
            include_appendix=True,
            threads=threads,
            progress=False,
            artifact=artifact,
            share_jobs=True,
        )
        return run_protocol(protocol, results, options)

    compute.shared = True  # type: ignore[attr-defined]  # xdist workers split the grid
    return compute


def load_source(name: str, *, artifact: str | None = None, device: str = "cpu") -> Source:
    """Resolve a registered source or a protocol TOML path, or raise
    :class:`SourceUnavailable` with the reason.

    ``device`` (runner sources only): ``cpu``, ``cuda[:N]``, or ``auto`` (this xdist worker's
    GPU, else the CPU); resolved only when the runner is needed, so the artifact source never
    imports torch."""
    spec = source_spec(name)
    if spec.kind == "artifact":
        return _paper_source(artifact)
    proto = load_protocol(spec.protocol)
    problem = weights_problem(proto)
    if problem:
        raise SourceUnavailable(problem)
    try:
        eval_path = proto.eval_path(artifact)
    except HarnessError as exc:  # e.g. an artifact: path with no artifact
        raise SourceUnavailable(f"{spec.name} needs its eval set: {exc}") from None
    if not eval_path.is_file():
        raise SourceUnavailable(f"{spec.name}: eval set {eval_path} not found")
    from harness.model.devices import resolve_device

    results = cached_results(
        spec.name,
        proto,
        _runner_compute(spec.name, proto, resolve_device(device), artifact),
        eval_path=eval_path,
    )
    return Source(spec.name, proto, [results], eval_path, meta={"protocol": spec.protocol})
