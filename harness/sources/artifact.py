"""The paper's published artifact as a source: its result folders and eval set.

Where the artifact lives, its SHA-256 manifest and its verification (the vendored copy in
``vendor/paper-artifact``, decompressed once into the cache; ``--artifact`` and
``$HARNESS_ARTIFACT``) are :mod:`harness.spec.artifact`: they belong to the experiment's
specification, and the protocol's ``artifact:`` paths resolve through them below this
layer. This module turns a located artifact into the ``paper`` source.
"""

from __future__ import annotations

from pathlib import Path

from harness.protocol import load_protocol
from harness.sources.source import Source, SourceUnavailable
from harness.spec.artifact import find_artifact

__all__ = ["RESULT_FOLDERS", "paper_result_dirs", "paper_source"]

# The artifact's result folders: the main grid, then the strict controls.
RESULT_FOLDERS = ("results/final", "results/final_strict_controls")


def paper_result_dirs(root: Path) -> list[Path]:
    """The result folders of the artifact at ``root``, in order (present or not)."""
    return [root / folder for folder in RESULT_FOLDERS]


def paper_source(artifact: str | None) -> Source:
    """The ``paper`` source: the published result files and the paper protocol, or
    :class:`SourceUnavailable` when the vendored artifact is missing from the checkout."""
    root = find_artifact(artifact)
    if root is None:
        raise SourceUnavailable(
            "paper artifact not found (vendor/paper-artifact is missing from this checkout); "
            "restore it with git, or run 'python -m harness fetch-artifact DEST' and pass "
            "--artifact DEST"
        )
    proto = load_protocol("paper")
    return Source(
        "paper",
        proto,
        [d for d in paper_result_dirs(root) if d.is_dir()],
        proto.eval_path(root),
        meta={"artifact": str(root)},
    )
