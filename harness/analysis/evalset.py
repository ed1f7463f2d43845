"""The frozen evaluation set: JSONL rows, SHA-256 checked, and the paper's prompt format."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import sha256_file

__all__ = ["EvalRow", "EvalSet", "load_evalset"]

REQUIRED_FIELDS = ("context", "question", "answer")


@dataclass(frozen=True)
class EvalRow:
    """One multi-hop QA item. ``sample_id`` is the artifact's ``clean_eval_id``."""

    sample_id: str
    context: str
    question: str
    answer: str
    hops: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class EvalSet:
    path: str
    sha256: str
    rows: tuple[EvalRow, ...]

    def __len__(self) -> int:
        return len(self.rows)


def load_evalset(
    path: str | os.PathLike[str], expected_sha256: str | None = None, *, id_field: str = ""
) -> EvalSet:
    """Read a JSONL eval file, check its SHA-256 against the protocol, and parse every row.

    Rows need ``context``, ``question`` and ``answer``; the sample id is ``clean_eval_id``
    (or ``id_field``, or ``row_{index}``).
    """
    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"eval file not found: {p}", "check the protocol's eval.path")
    digest = sha256_file(p)
    if expected_sha256 and digest != expected_sha256:
        raise HarnessError(
            f"eval file {p} has SHA-256 {digest[:12]}..., the protocol expects "
            f"{expected_sha256[:12]}...",
            "use the frozen eval file, or update eval.sha256 deliberately in the protocol",
        )
    rows: list[EvalRow] = []
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise HarnessError(
            f"eval file {p} is not UTF-8 text (byte {exc.start})",
            "regenerate or re-encode it as UTF-8",
        ) from None
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        # JSONDecodeError, or ValueError/RecursionError for 5000-digit ints and deep nesting
        except (ValueError, RecursionError) as exc:
            raise HarnessError(
                f"{p}:{lineno}: not valid JSON ({getattr(exc, 'msg', None) or str(exc)[:60]})",
                "fix or regenerate the eval file",
            ) from None
        if not isinstance(obj, dict):
            raise HarnessError(f"{p}:{lineno}: a row must be a JSON object", "one object per line")
        for key in REQUIRED_FIELDS:
            if not isinstance(obj.get(key), str):
                raise HarnessError(
                    f"{p}:{lineno}: missing or non-string field {key!r}",
                    "every row needs context, question and answer strings",
                )
        sid = obj.get(id_field) if id_field else obj.get("clean_eval_id")
        rows.append(
            EvalRow(
                sample_id=str(sid) if sid is not None else f"row_{len(rows):06d}",
                context=obj["context"],
                question=obj["question"],
                answer=obj["answer"],
                hops=obj.get("hops") if isinstance(obj.get("hops"), int) else None,
                extra={k: v for k, v in obj.items() if k not in REQUIRED_FIELDS},
            )
        )
    if not rows:
        raise HarnessError(f"eval file {p} is empty", "point eval.path at a JSONL file with rows")
    ids = [r.sample_id for r in rows]
    if len(set(ids)) != len(ids):
        raise HarnessError(f"eval file {p} has duplicate sample ids", "make ids unique")
    return EvalSet(path=str(p), sha256=digest, rows=tuple(rows))
