"""Result sources for the claims suite: the paper artifact, the mini pair, real Pythia.

Each source resolves to a folder of result files in the artifact schema plus the protocol
they follow. One module per concept:

- :mod:`~harness.sources.source`: :class:`Source` (result folders, protocol, cached
  analyses) and :class:`SourceUnavailable`;
- :mod:`~harness.sources.registry`: the named sources (:data:`REGISTRY`), protocol TOML
  paths as sources, the weights check and :func:`load_source`;
- :mod:`~harness.sources.artifact`: the paper's published artifact as the ``paper`` source;
- :mod:`~harness.sources.store`: the result store, where ``mini`` and ``pythia`` are
  computed once per protocol hash under a file lock, so every pytest-xdist worker and every
  later run reuses them.
"""

from __future__ import annotations

from harness.sources.artifact import RESULT_FOLDERS, paper_result_dirs, paper_source
from harness.sources.registry import (
    REGISTRY,
    SOURCE_NAMES,
    SourceSpec,
    load_source,
    runner_compute,
    runner_source,
    source_spec,
    weights_problem,
)
from harness.sources.source import Source, SourceUnavailable
from harness.sources.store import (
    cache_root,
    cached_results,
    computation_count,
    entry_root,
    sealed_results,
    weights_fingerprint,
)

__all__ = [
    "REGISTRY",
    "RESULT_FOLDERS",
    "SOURCE_NAMES",
    "Source",
    "SourceSpec",
    "SourceUnavailable",
    "cache_root",
    "cached_results",
    "computation_count",
    "entry_root",
    "load_source",
    "paper_result_dirs",
    "paper_source",
    "runner_compute",
    "runner_source",
    "sealed_results",
    "source_spec",
    "weights_fingerprint",
    "weights_problem",
]
