"""Is a set of result files what it claims to be? Copies, provenance and rows, in one place.

Three questions that the validator (blocking checks) and every command that pairs rows
(:meth:`harness.analysis.results.ResultSet.check_consistent`) both ask, with the same answers:

- **copies**: two files that are identical apart from the fields that name their seed (one
  run copied under another seed's name: the CI would count it twice);
- **provenance**: every file of one set comes from one run of one protocol on one set of
  inputs (:mod:`harness.run.inputs`): files of our runner carry ``provenance`` and must agree
  on its identity fields; a file without provenance beside them came from elsewhere. A set
  with no provenance at all is the paper's artifact (its files publish none): accepted as
  such, its eval hash checked by the callers;
- **rows**: every row has a non-empty gold, a sample id keeps one gold across the files
  (rotated ids break this), and, given the eval set the files name, every id and gold comes
  from it.

Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.conditions import CONDITIONS

__all__ = [
    "IDENTITY_FIELDS",
    "content_copies",
    "find_eval_file",
    "provenance_problems",
    "row_problems",
]


class ResultFile(Protocol):
    """What these checks read of a :class:`harness.analysis.results.ResultFile` (which
    imports this module, so it is named structurally here)."""

    @property
    def name(self) -> str: ...
    @property
    def condition(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def per_sample(self) -> tuple[dict[str, Any], ...]: ...
    @property
    def raw(self) -> dict[str, Any]: ...


# provenance fields every file of one run shares (timings, device, batch size, git hash and
# package versions may differ between the sessions of one resumed run)
IDENTITY_FIELDS = ("runner", "protocol_hash", "init", "sender", "receiver", "n_eval_rows")
_TRANSLATOR_INPUTS = ("train_sha256", "train_limit")
_MAP_TEXTS_INPUTS = ("texts_sha256",)  # read by Ramesh & Li's conditions only


def _content_digest(f: ResultFile) -> str:
    """SHA-256 of a file's content without the fields that name its seed."""
    data = dict(f.raw)
    data.pop("seed", None)
    data.pop("checkpoint", None)  # the checkpoint path names the seed
    if isinstance(data.get("translator"), dict):
        data["translator"] = {k: v for k, v in data["translator"].items() if k != "seed"}
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8", errors="backslashreplace")).hexdigest()


def content_copies(files: Sequence[ResultFile]) -> list[tuple[ResultFile, ResultFile]]:
    """Pairs of files identical apart from their seed (by file name order): a genuine run of
    another seed differs at least in its timings and creation time."""
    seen: dict[str, ResultFile] = {}
    out = []
    for f in sorted(files, key=lambda f: f.name):
        digest = _content_digest(f)
        if digest in seen:
            out.append((seen[digest], f))
        else:
            seen[digest] = f
    return out


def _prov(f: ResultFile) -> dict[str, Any] | None:
    prov = f.raw.get("provenance")
    return prov if isinstance(prov, dict) else None


def _uses_translator(f: ResultFile) -> bool:
    cond = CONDITIONS.get(f.condition)
    return "translator" in f.raw or (cond is not None and cond.uses_translator)


def _reads_map_texts(f: ResultFile) -> bool:
    cond = CONDITIONS.get(f.condition)
    return cond is not None and cond.reads_map_texts


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=repr)
    return text if len(text) <= 16 else text[:16] + "..."


def provenance_problems(files: Sequence[ResultFile]) -> list[str]:
    """Why ``files`` are not one run's: a file without provenance among our runner's, or two
    values of one identity field (``provenance.FIELD`` or ``provenance.inputs.FIELD``), each
    naming a file of each value. Empty for one run's files and for the paper's artifact."""
    with_prov = [f for f in files if _prov(f) is not None]
    if not with_prov:
        return []  # the paper artifact: no file carries provenance
    problems = [
        f"{f.name} has no provenance but {with_prov[0].name} (and the other runner files) do: "
        "a file from elsewhere"
        for f in files
        if _prov(f) is None
    ]
    fields: list[tuple[str, Any]] = [(k, None) for k in IDENTITY_FIELDS]
    inputs_keys = sorted(
        {k for f in with_prov if isinstance(i := _prov(f).get("inputs"), dict) for k in i}  # type: ignore[union-attr]
    )
    fields += [("inputs", k) for k in inputs_keys]
    for key, sub in fields:
        group = with_prov
        if sub in _TRANSLATOR_INPUTS:
            group = [f for f in with_prov if _uses_translator(f)]
        elif sub in _MAP_TEXTS_INPUTS:
            group = [f for f in with_prov if _reads_map_texts(f)]
        seen: dict[str, str] = {}
        for f in group:
            value = _prov(f).get(key)  # type: ignore[union-attr]
            if sub is not None:
                value = value.get(sub) if isinstance(value, dict) else None
            seen.setdefault(_short(value), f.name)
        if len(seen) > 1:
            (a, fa), (b, fb) = list(seen.items())[:2]
            name = key if sub is None else f"{key}.{sub}"
            problems.append(
                f"files mix {len(seen)} values of provenance.{name}: {a} in {fa}, {b} in {fb}"
            )
    return problems


def row_problems(files: Sequence[ResultFile], gold: Mapping[str, str] | None = None) -> list[str]:
    """Rows that cannot be paired: an empty gold, a sample id whose gold differs between two
    files (rotated ids), and with ``gold`` (the eval set: id -> answer) an id outside it or
    a gold that is not its answer. One message per file and kind, naming the first row."""
    problems = []
    first_gold: dict[str, tuple[str, str]] = {}  # id -> (gold, file)
    for f in files:
        empty = [r["sample_id"] for r in f.per_sample if not str(r["gold"]).strip()]
        if empty:
            problems.append(f"{f.name}: {len(empty)} rows with an empty gold (first {empty[0]})")
        clash = []
        for r in f.per_sample:
            sid, g = r["sample_id"], r["gold"]
            was = first_gold.setdefault(sid, (g, f.name))
            if was[0] != g:
                clash.append((sid, was[1]))
        if clash:
            sid, other = clash[0]
            problems.append(
                f"{f.name}: {len(clash)} sample ids carry another gold than in {other} "
                f"(first {sid}; rotated or relabelled ids)"
            )
        if gold is not None:
            outside = [r["sample_id"] for r in f.per_sample if r["sample_id"] not in gold]
            wrong = [
                r["sample_id"]
                for r in f.per_sample
                if r["sample_id"] in gold and gold[r["sample_id"]] != r["gold"]
            ]
            if outside:
                problems.append(
                    f"{f.name}: {len(outside)} sample ids are not in the eval set "
                    f"(first {outside[0]})"
                )
            if wrong:
                problems.append(
                    f"{f.name}: {len(wrong)} golds are not the eval set's answer (first {wrong[0]})"
                )
    return problems


def find_eval_file(
    files: Sequence[ResultFile],
    protocol: Any = None,
    artifact: str | None = None,
) -> Path | None:
    """The eval file the files name by ``config.clean_eval_hash``: ``protocol``'s if given and
    its hash matches, else a shipped protocol's (``protocols/*.toml``) whose pinned hash
    matches; None when none is found here (then only the checks without the eval run)."""
    from harness.errors import HarnessError
    from harness.io import sha256_file
    from harness.protocol import PROTOCOL_DIR, load_protocol

    hashes = {f.config.get("clean_eval_hash") for f in files}
    if len(hashes) != 1:
        return None
    (want,) = hashes
    candidates = [protocol] if protocol is not None else []
    for path in sorted(PROTOCOL_DIR.glob("*.toml")):
        try:
            candidates.append(load_protocol(path))
        except HarnessError:
            continue
    for proto in candidates:
        if proto.eval.sha256 != want:
            continue
        try:
            path = proto.eval_path(artifact)
        except HarnessError:
            continue
        if path.is_file() and sha256_file(path) == want:
            return path
    return None
