"""A ``pytest claims`` run's status file, read: which claims it reported (module, paper
section, the docstring quoting the paper) and each claim's outcome and measured numbers per
source. Torch-free; the claim table (:mod:`harness.cli.claimtable`) and a sweep's picture
render it. Nothing here reads the test sources, so it works from an installed package."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import read_text_bounded

__all__ = [
    "SNAPSHOT_MODULE",
    "Claim",
    "collect_claims",
    "load_status",
    "sentence",
    "snapshot_names",
]

SNAPSHOT_MODULE = "test_99_snapshots"


def sentence(name: str) -> str:
    """A test name read as a sentence: ``near_0_97`` -> ``near 0.97``, ``is_0_0926`` ->
    ``is 0.0926`` (a zero integer part is always a decimal fraction)."""
    text = name.removeprefix("test_")
    text = re.sub(r"(?<!\d)(?<!\d_)(\d+)_(\d{1,2})(?=_|$)", r"\1.\2", text)
    text = re.sub(r"(?<!\d)(?<!\d_)0_(\d+)(?=_|$)", r"0.\1", text)  # 0_0926 -> 0.0926
    text = re.sub(r"(?:^|(?<=_))ci(?=_|$)", "CI", text)
    return text.replace("_", " ")


@dataclass(frozen=True)
class Claim:
    module: str
    section: str
    name: str
    quote: str

    @property
    def sentence(self) -> str:
        """The test name read as a sentence."""
        return sentence(self.name)

    @property
    def beyond_the_paper(self) -> bool:
        return self.section.lower().startswith("beyond the paper")


def collect_claims(status_path: str | os.PathLike[str] | None) -> list[Claim]:
    """The claims a ``pytest claims`` run reported (its status file's catalog), in module
    order (the numbered modules follow the paper; beyond-the-paper modules are numbered
    last) and definition order within a module, snapshots excluded. Built from what the run
    recorded, so the table works from an installed package as from a checkout."""
    return [c for c in _catalog(status_path) if c.module != SNAPSHOT_MODULE]


def _catalog(status_path: str | os.PathLike[str] | None) -> list[Claim]:
    data = _read_status(status_path)
    entries = data.get("catalog", {})
    if not isinstance(entries, dict):
        return []
    out = []
    for name, e in entries.items():
        if not isinstance(e, dict) or not isinstance(name, str):
            continue
        line = e.get("line")
        out.append(
            (
                str(e.get("module", "")),
                line if isinstance(line, int) else 0,
                Claim(
                    str(e.get("module", "")),
                    str(e.get("section", "")),
                    name,
                    str(e.get("quote", "")),
                ),
            )
        )
    return [c for _, _, c in sorted(out, key=lambda t: (t[0], t[1], t[2].name))]


def snapshot_names(status_path: str | os.PathLike[str] | None) -> list[str]:
    return [c.name for c in _catalog(status_path) if c.module == SNAPSHOT_MODULE]


def _read_status(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The status file's JSON object ({} when absent); a file that is not one is a one-line
    error naming it."""
    if not path or not Path(path).is_file():
        return {}
    fix = "delete it and re-run 'pytest claims', or pass the file pytest wrote (--status PATH)"
    try:
        data = json.loads(read_text_bounded(path, "claim status file"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HarnessError(f"claim status file {path} is unreadable ({exc})", fix) from None
    if not isinstance(data, dict) or not isinstance(data.get("claims", {}), dict):
        raise HarnessError(f"claim status file {path} is not a status object", fix)
    return data


def load_status(path: str | os.PathLike[str] | None) -> tuple[dict[str, Any], str | None]:
    """(claims -> source -> entry, latest run) from a status file; ({}, None) when absent.

    A file that is not a status file is a one-line error naming it."""
    data = _read_status(path)
    claims = {
        k: {s: e for s, e in v.items() if isinstance(e, dict)}
        for k, v in data.get("claims", {}).items()
        if isinstance(v, dict)
    }
    latest = data.get("latest_run")
    return claims, latest if isinstance(latest, str) else None
