"""The source registry: the named sources (the paper artifact, the mini pair and its
variants, real Pythia), protocol TOML paths as sources, and loading any of them.

A ``runner`` source's result files come from our runner, computed once per protocol hash
into the result store (:mod:`harness.sources.store`); it is available only where both of
its models load offline (:func:`weights_problem`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.protocol import Protocol, load_protocol
from harness.sources.artifact import paper_source
from harness.sources.source import Source, SourceUnavailable
from harness.sources.store import cached_results

__all__ = [
    "REGISTRY",
    "SOURCE_NAMES",
    "SourceSpec",
    "load_source",
    "runner_compute",
    "runner_source",
    "source_spec",
    "weights_problem",
]


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
        rev = protocol.models.revision
        at, flag = ("", "") if rev == "main" else (f" at revision {rev}", f" --revision {rev}")
        return (
            f"weights not found: {', '.join(missing)}{at} (not a local folder, not in the "
            "Hugging Face cache); download them where a hub is reachable (huggingface-cli "
            f"download {' '.join(missing)}{flag}), or set HF_HOME to a cache that holds them"
        )
    try:
        import harness.run.runner  # noqa: F401
    except ImportError as exc:
        return f"the runner is not importable ({exc})"
    return None


def runner_compute(
    name: str, protocol: Protocol, device: str, artifact: str | None = None
) -> Callable[[Path], object]:
    """The store's ``compute`` for a runner source: the whole grid (strict and appendix
    files included) into the entry's folder, marked ``shared`` so xdist workers split it."""

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
        return paper_source(artifact)
    return runner_source(
        spec.name,
        load_protocol(spec.protocol),
        artifact=artifact,
        device=device,
        meta={"protocol": spec.protocol},
    )


def runner_source(
    name: str,
    proto: Protocol,
    *,
    cache_name: str | None = None,
    artifact: str | None = None,
    device: str = "cpu",
    meta: dict[str, Any] | None = None,
) -> Source:
    """The source ``name`` of ``proto``'s result files, computed once into the store under
    ``cache_name`` (default ``name``), or :class:`SourceUnavailable` when its weights or its
    eval set are not here."""
    problem = weights_problem(proto)
    if problem:
        raise SourceUnavailable(problem)
    try:
        eval_path = proto.eval_path(artifact)
    except HarnessError as exc:  # e.g. an artifact: path with no artifact
        raise SourceUnavailable(f"{name} needs its eval set: {exc}") from None
    if not eval_path.is_file():
        raise SourceUnavailable(f"{name}: eval set {eval_path} not found")
    from harness.model.devices import resolve_device

    entry = cache_name or name
    results = cached_results(
        entry,
        proto,
        runner_compute(entry, proto, resolve_device(device), artifact),
        eval_path=eval_path,
    )
    return Source(name, proto, [results], eval_path, meta=dict(meta or {}))
