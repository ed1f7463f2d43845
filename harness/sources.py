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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.audit import AuditRow, audit
from harness.errors import HarnessError
from harness.io import atomic_write_json
from harness.protocol import Protocol, load_protocol
from harness.results import ResultSet
from harness.tables import ComparisonRow, SummaryRow, compare, summarize
from harness.validate import ValidationReport, validate

__all__ = [
    "SOURCE_NAMES",
    "Source",
    "SourceUnavailable",
    "cache_root",
    "load_source",
    "mini_available",
    "pythia_weights_problem",
]

log = logging.getLogger(__name__)
SOURCE_NAMES = ("paper", "mini", "pythia")
_REPO_ROOT = Path(__file__).resolve().parent.parent
MINI_RECEIVER = _REPO_ROOT / "harness" / "mini" / "models" / "receiver"


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
        return validate(
            self.result_dirs, self.protocol, include_strict=False, eval_path=self.eval_path
        )

    @cached_property
    def audit_rows(self) -> list[AuditRow]:
        return audit(
            self.results, self.protocol.audit.conditions, per_file=self.protocol.audit.per_file
        )

    def wb(self, condition: str) -> float:
        """Mean word-boundary accuracy of a condition over its runs (fwd)."""
        return self.summary[condition].means["word_boundary_contains"]

    def translator_metrics(self) -> list[dict[str, Any]]:
        """Per-seed translator quality records carried by result files (ours only)."""
        seen: dict[Any, dict[str, Any]] = {}
        for f in self.results:
            t = f.raw.get("translator")
            if isinstance(t, dict) and f.direction == "fwd":
                seen.setdefault(f.seed, t)
        return [seen[k] for k in sorted(seen, key=str)]


def _paper_source(artifact: str | None) -> Source:
    from harness.artifact import find_artifact

    root = find_artifact(artifact)
    if root is None:
        raise SourceUnavailable(
            "paper artifact not found; run 'python -m harness fetch-artifact "
            "~/.cache/activation-transfer/paper-artifact' or pass --artifact PATH"
        )
    proto = load_protocol("paper")
    dirs = [root / "results" / "final", root / "results" / "final_strict_controls"]
    return Source(
        "paper",
        proto,
        [d for d in dirs if d.is_dir()],
        proto.resolve_path(proto.eval.path, root),
        meta={"artifact": str(root)},
    )


def mini_available() -> str | None:
    """None when the mini pair and the runner are present, else the reason."""
    if not (MINI_RECEIVER / "config.json").is_file():
        return f"mini weights not found at {MINI_RECEIVER}"
    try:
        import harness.runner  # noqa: F401
    except ImportError as exc:
        return f"the runner is not importable ({exc})"
    return None


def pythia_weights_problem(protocol: Protocol) -> str | None:
    """None when both Pythia checkpoints load offline, else a message saying how to provide them."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return "huggingface_hub is not installed"
    missing = []
    for repo in (protocol.models.sender, protocol.models.receiver):
        if Path(repo).is_dir():
            continue
        hit = try_to_load_from_cache(repo, "config.json", revision=protocol.models.revision)
        if not isinstance(hit, str):
            missing.append(repo)
    if missing:
        return (
            f"weights not found: {', '.join(missing)} (not in the Hugging Face cache); "
            "download them where a hub is reachable (huggingface-cli download EleutherAI/pythia-160m "
            "EleutherAI/pythia-410m), or set HF_HOME to a cache that holds them"
        )
    return None


def _run_cached(name: str, protocol: Protocol, *, device: str = "cpu") -> Path:
    """Results of ``protocol`` from the cache, computing them once under a file lock."""
    from filelock import FileLock

    root = cache_root() / name / protocol.hash
    results = root / "results"
    done = root / "complete.json"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".lock")):
        if done.is_file():
            return results
        from harness.runner import run_protocol

        t0 = time.perf_counter()
        run_protocol(protocol, results, device=device, include_strict=True)
        report = validate(
            [results],
            protocol,
            include_strict=True,
            eval_path=protocol.resolve_path(protocol.eval.path),
        )
        if not report.blocking_passed:
            bad = "; ".join(f"{c.name}: {c.detail}" for c in report.failures())
            raise HarnessError(
                f"{name} results in {results} fail validation: {bad}", f"delete {root} and re-run"
            )
        computed = {
            "protocol": protocol.name,
            "protocol_hash": protocol.hash,
            "seconds": round(time.perf_counter() - t0, 2),
            "pid": os.getpid(),
        }
        atomic_write_json(done, computed)
        _count_computation(name, protocol.hash)
    return results


def _count_computation(name: str, phash: str) -> None:
    """Append-only counter of cache fills (read by the benchmark and the warm-run check)."""
    log_path = cache_root() / "computations.jsonl"
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"source": name, "protocol_hash": phash, "time": time.time()}) + "\n")


def load_source(name: str, *, artifact: str | None = None, device: str = "cpu") -> Source:
    """Resolve a source by name, or raise :class:`SourceUnavailable` with the reason."""
    if name == "paper":
        return _paper_source(artifact)
    if name == "mini":
        problem = mini_available()
        if problem:
            raise SourceUnavailable(problem)
        proto = load_protocol("mini")
        results = _run_cached("mini", proto, device=device)
        return Source("mini", proto, [results], proto.resolve_path(proto.eval.path))
    if name == "pythia":
        proto = load_protocol("paper")
        problem = pythia_weights_problem(proto)
        if problem:
            raise SourceUnavailable(problem)
        try:
            proto.resolve_path(proto.eval.path, artifact)
        except HarnessError as exc:
            raise SourceUnavailable(f"pythia needs the paper's eval set: {exc}") from None
        results = _run_cached("pythia", proto, device=device)
        return Source("pythia", proto, [results], proto.resolve_path(proto.eval.path, artifact))
    raise HarnessError(f"unknown source {name!r}", f"use one of: {', '.join(SOURCE_NAMES)}")
