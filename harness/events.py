"""Opt-in event log: one JSON line per expensive artefact computed (for the benchmark).

Set ``HARNESS_EVENTS=/path/events.jsonl`` and the runner appends ``activations``,
``translator`` and ``result_file`` events (with the pid, so xdist workers can be told apart).
Unset, :func:`record` does nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["ENV_VAR", "count_events", "record"]

ENV_VAR = "HARNESS_EVENTS"


def record(kind: str, **fields: Any) -> None:
    """Append one event line when ``$HARNESS_EVENTS`` is set (O_APPEND: whole lines)."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    line = json.dumps({"kind": kind, "pid": os.getpid(), "time": time.time(), **fields})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def count_events(path: str | os.PathLike[str]) -> dict[str, Counter[str]]:
    """kind -> Counter of artefact keys, from an event log."""
    out: dict[str, Counter[str]] = {}
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            ev = json.loads(line)
            out.setdefault(ev["kind"], Counter())[str(ev.get("key", ""))] += 1
    return out
