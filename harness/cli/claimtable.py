"""The claim table for people: each claim, the paper sentence it checks, and per source the
outcome of the last ``pytest claims`` run with the numbers that run measured (read from the
status file pytest writes)."""

from __future__ import annotations

import os
from typing import Any

from harness.analysis.claimstatus import (
    SNAPSHOT_MODULE,
    Claim,
    collect_claims,
    load_status,
    sentence,
)
from harness.analysis.claimstatus import (
    snapshot_names as snapshot_names_of,
)
from harness.text import printable

__all__ = [
    "SNAPSHOT_MODULE",
    "Claim",
    "collect_claims",
    "load_status",
    "render_claim_table",
    "sentence",
]

_SYMBOL = {
    "passed": "PASS",
    "failed": "FAIL",
    "skipped": "skip",
    "xfail": "xfail",
    "xpass": "XPASS",
    "not run": "not run",
}


def _cell(entry: dict[str, Any] | None, latest: str | None) -> tuple[str, str]:
    """(outcome symbol, text) of one claim on one source."""
    if not entry:
        return "not run", ""
    outcome = _SYMBOL.get(str(entry.get("outcome")), str(entry.get("outcome")))
    measured = str(entry.get("measured") or "")
    detail = str(entry.get("detail") or "")
    if outcome == "xfail":
        text = f"{measured} -- {detail}" if measured else detail
    elif outcome == "FAIL":
        text = detail or measured
    elif outcome == "skip":
        text = detail
    else:
        text = measured
    if latest and entry.get("run") != latest:
        text = f"[earlier run {entry.get('run')}] {text}".strip()
    return printable(outcome), printable(text)  # from a file: no raw control characters


def _sources(status: dict[str, Any]) -> list[str]:
    """The sources the status file holds (registered ones first); the registry's when empty."""
    from harness.sources import SOURCE_NAMES

    present = {s for per_source in status.values() for s in per_source}
    if not present:
        return list(SOURCE_NAMES)
    ordered = [s for s in SOURCE_NAMES if s in present]
    return ordered + sorted(present - set(ordered))


def _unavailable(status: dict[str, Any], sources: list[str]) -> dict[str, str]:
    """Sources skipped as unavailable on every claim they were asked for, with the reason."""
    out = {}
    for s in sources:
        entries = [v[s] for v in status.values() if s in v]
        if entries and all(
            e.get("outcome") == "skipped" and "unavailable" in str(e.get("detail")) for e in entries
        ):
            out[s] = str(entries[0].get("detail"))
    return out


def render_claim_table(
    status_path: str | os.PathLike[str] | None = None, *, markdown: bool = False
) -> str:
    """Render the claim table (plain text, or markdown for the README)."""
    status, latest = load_status(status_path)
    claims = collect_claims(status_path)
    sources = _sources(status)
    gone = _unavailable(status, sources)
    shown = [s for s in sources if s not in gone]
    snapshot_names = snapshot_names_of(status_path)
    width = max([8, *(len(s) for s in sources)])
    lines: list[str] = []
    counts: dict[str, dict[str, int]] = {s: {} for s in sources}
    for c in claims:
        for s in sources:
            outcome, _ = _cell(status.get(c.name, {}).get(s), latest)
            counts[s][outcome] = counts[s].get(outcome, 0) + 1
    if markdown:
        lines.append("| # | claim | " + " | ".join(shown) + " |")
        lines.append("|---|---|" + "---|" * len(shown))
    section = None
    for i, c in enumerate(claims, 1):
        cells = [_cell(status.get(c.name, {}).get(s), latest) for s in shown]
        if markdown:
            row = [f"{o} {t}".strip().replace("|", "/") for o, t in cells]
            mark = "*beyond the paper*: " if c.beyond_the_paper else ""
            lines.append(f"| {i} | {mark}{c.sentence} | " + " | ".join(row) + " |")
            continue
        if c.section != section:
            section = c.section
            lines.append(f"\n{section}")
        lines.append(f"  {i:2d}. {c.sentence}")
        for s, (o, t) in zip(shown, cells, strict=True):
            lines.append(f"        {s:<{width}} {o:<7} {t}".rstrip())
    snap_rows = []
    for s in shown:
        entries = [status.get(n, {}).get(s) for n in snapshot_names]
        ran = [e for e in entries if e]
        if not ran:
            snap_rows.append((s, "not run", ""))
            continue
        bad = [
            f"{n.removeprefix('test_')}: {_cell(e, latest)[1]}"
            for n, e in zip(snapshot_names, entries, strict=True)
            if e and e.get("outcome") != "passed"
        ]
        outcome = "PASS" if not bad and len(ran) == len(snapshot_names) else "FAIL"
        if all(e.get("outcome") == "skipped" for e in ran):
            outcome = "skip"
        text = f"{len(ran) - len(bad)} of {len(snapshot_names)} unchanged"
        snap_rows.append((s, outcome, text + (f"; {'; '.join(bad)}" if bad else "")))
    if markdown:
        row = [f"{o} {t}".strip().replace("|", "/") for _, o, t in snap_rows]
        lines.append(
            "| - | snapshots (summary, comparisons, validation, audit) | " + " | ".join(row) + " |"
        )
    else:
        lines.append("\nSnapshots (summary, comparisons, validation, audit)")
        for s, o, t in snap_rows:
            lines.append(f"        {s:<{width}} {o:<7} {t}".rstrip())
        lines.append("")
        for s in shown:
            lines.append(
                f"{s:>{width}}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts[s].items()))
            )
        for s, why in gone.items():
            lines.append(f"{s:>{width}}: every claim skipped -- {why}")
        if latest:
            lines.append(f"(run of {latest}; numbers measured in that run)")
        if not status:
            lines.append("\n(no status file yet: run 'pytest claims -n auto' first)")
    return printable("\n".join(lines), keep_newlines=True)  # source names come from the file
