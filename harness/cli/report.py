"""``report``, the main job's outputs: per available source, the tables, validation, audit
and figures (and the regime and layer-search figures beyond the paper)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

from harness.analysis.audit import label_counts
from harness.analysis.figures import fig_regimes, write_figures
from harness.analysis.layer_search import (
    fig_layer_search,
    layer_search_markdown,
    layer_search_tables,
)
from harness.analysis.tables import summarize
from harness.io import atomic_write_json, atomic_write_text
from harness.sources import REGISTRY, SOURCE_NAMES, SourceUnavailable, load_source
from harness.text import printable

__all__ = ["cmd_report", "register", "write_report"]


def write_report(
    out: str | os.PathLike[str], *, artifact: str | None = None, sources: list[str] | None = None
) -> Iterator[str]:
    """Write ``out/<source>/{summary,compare,validate,audit}.json`` and figures; yield log lines."""
    root = Path(out)
    regimes: dict[str, dict[str, float]] = {}
    for name in sources or SOURCE_NAMES:
        try:
            src = load_source(name, artifact=artifact)
        except SourceUnavailable as exc:
            yield f"[{name}] skipped: {exc}"
            continue
        d = root / src.name  # a validated name (a protocol path's is its name), never a path
        atomic_write_json(
            d / "summary.json", {"rows": [r.to_json() for r in summarize(src.results)]}
        )
        atomic_write_json(
            d / "compare.json", {"rows": [r.to_json() for r in src.comparisons.values()]}
        )
        atomic_write_json(d / "validate.json", src.validation.to_json())
        rows = src.audit_rows
        atomic_write_json(
            d / "audit.json",
            {"rows": [r.to_json() for r in rows], "label_counts": label_counts(rows)},
        )
        figs = write_figures(
            d / "figures",
            src.results,
            list(summarize(src.results)),
            list(src.comparisons.values()),
            rows,
            source=src.name,
        )
        searches = layer_search_tables(src.results)  # Ramesh & Li's (k, j) grids (issue #28)
        if searches:
            atomic_write_json(d / "layer_search.json", searches)
            atomic_write_text(d / "layer_search.md", layer_search_markdown(searches) + "\n")
            figs.append(
                fig_layer_search(
                    searches,
                    d / "figures" / "fig9_layer_search.png",
                    f"Ramesh & Li layer search, selected on the translator-training split "
                    f"[{src.name}]",
                )
            )
        if src.name in REGIME_SOURCES:
            regimes[REGIME_SOURCES[src.name]] = {c: src.wb(c) for c in src.summary}
        verdict = "passed" if src.validation.blocking_passed else "FAILED"
        yield (
            f"[{src.name}] {len(src.results)} result files from {', '.join(map(str, src.result_dirs))}; "
            f"validation {src.validation.present_files}/{src.validation.expected_files} {verdict}; "
            f"tables and {len(figs)} figures in {d}"
        )
    if len(regimes) > 1:
        path = fig_regimes(regimes, root / "fig8_regimes.png")
        yield f"[regimes] {', '.join(regimes)} side by side in {path}"


# Sources shown side by side in the regime figure (beyond the paper, issues #20, #28).
REGIME_SOURCES = {n: s.regime for n, s in REGISTRY.items() if s.regime is not None}


def cmd_report(args: argparse.Namespace) -> int:
    for line in write_report(args.out, artifact=args.artifact, sources=args.source):
        print(printable(line))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="tables, validation, audit and figures for every available source"
    )
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--artifact", help="paper artifact folder")
    p.add_argument("--source", action="append", help="restrict to these sources")
    p.set_defaults(fn=cmd_report)
