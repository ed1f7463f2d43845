"""Result files in the artifact's schema (``h1_final_runner.v1``): model, load, write, naming.

One loader serves every source (the paper's artifact, our runner on the mini pair or on
Pythia). Unknown extra fields are kept; a missing required field is an error naming the file
and the field. Our runner adds provenance fields; it never renames one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.conditions import CONDITIONS
from harness.errors import HarnessError
from harness.io import atomic_write_json, read_text_bounded
from harness.spec.jobs import result_filename

__all__ = [
    "REQUIRED_DIAGNOSTICS",
    "REQUIRED_SAMPLE_FIELDS",
    "REQUIRED_TOP_LEVEL",
    "SCHEMA_VERSION",
    "ResultFile",
    "ResultKey",
    "ResultSet",
    "check_result_dict",
    "load_result_file",
    "result_filename",
    "write_result_file",
]

SCHEMA_VERSION = "h1_final_runner.v1"
REQUIRED_TOP_LEVEL = (
    "schema_version",
    "condition",
    "direction",
    "seed",
    "deterministic",
    "config",
    "models",
    "injection",
    "per_sample",
    "metrics",
    "diagnostics",
)
REQUIRED_CONFIG = ("clean_eval_hash", "n_samples", "generation", "layer_rel", "max_length")
REQUIRED_SAMPLE_FIELDS = ("sample_id", "gold", "prediction")
REQUIRED_DIAGNOSTICS = (
    "seq_len_mismatch_count",
    "token_mismatch_count",
    "shuffle_self_fallback_count",
)

ResultKey = tuple[str, str, int | None]


@dataclass(frozen=True)
class ResultFile:
    """One run: one condition, direction and seed over the eval set."""

    path: str
    condition: str
    direction: str
    seed: int | None
    deterministic: bool
    config: dict[str, Any]
    models: dict[str, Any]
    injection: dict[str, Any]
    per_sample: tuple[dict[str, Any], ...]
    metrics: dict[str, Any]
    diagnostics: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)
    # Memoised per-sample metric scores (metric -> sample_id -> 0/1), owned by this file.
    score_cache: dict[str, dict[str, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def key(self) -> ResultKey:
        return (self.condition, self.direction, self.seed)

    @property
    def n(self) -> int:
        return len(self.per_sample)

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def label(self) -> str:
        seed = "deterministic" if self.seed is None else f"seed{self.seed}"
        return f"{self.condition}/{self.direction}/{seed}"

    def predictions(self) -> dict[str, tuple[str, str]]:
        """sample_id -> (prediction, gold)."""
        return {r["sample_id"]: (r["prediction"], r["gold"]) for r in self.per_sample}


def check_result_dict(data: Any, where: str) -> None:
    """Raise :class:`HarnessError` naming ``where`` and the first missing or ill-typed field."""
    if not isinstance(data, dict):
        raise HarnessError(f"{where}: a result file must hold a JSON object")
    for key in REQUIRED_TOP_LEVEL:
        if key not in data:
            raise HarnessError(
                f"{where}: missing required field {key!r}",
                f"regenerate the file; schema {SCHEMA_VERSION} needs {', '.join(REQUIRED_TOP_LEVEL)}",
            )
    for key in ("config", "models", "injection", "metrics", "diagnostics"):
        if not isinstance(data[key], dict):
            raise HarnessError(f"{where}: field {key!r} must be an object")
    _check_config(data["config"], where)
    if data.get("provenance") is not None and not isinstance(data["provenance"], dict):
        raise HarnessError(f"{where}: field 'provenance' must be an object")
    for key in REQUIRED_DIAGNOSTICS:
        if key not in data["diagnostics"]:
            raise HarnessError(f"{where}: missing required field 'diagnostics.{key}'")
    _check_rows(data["per_sample"], where)
    seed = data["seed"]
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise HarnessError(f"{where}: field 'seed' must be an integer or null, got {seed!r}")
    for key in ("condition", "direction"):
        if not isinstance(data[key], str):
            raise HarnessError(f"{where}: field {key!r} must be a string")


def _check_config(config: dict[str, Any], where: str) -> None:
    for key in REQUIRED_CONFIG:
        if key not in config:
            raise HarnessError(f"{where}: missing required field 'config.{key}'")
    if not isinstance(config["clean_eval_hash"], str):
        raise HarnessError(f"{where}: field 'config.clean_eval_hash' must be a string")
    if not isinstance(config["generation"], dict):
        raise HarnessError(f"{where}: field 'config.generation' must be an object")
    if config.get("sender_generation") is not None and not isinstance(
        config["sender_generation"], dict
    ):
        raise HarnessError(f"{where}: field 'config.sender_generation' must be an object or null")


def _check_rows(rows: Any, where: str) -> None:
    if not isinstance(rows, list):
        raise HarnessError(f"{where}: field 'per_sample' must be a list")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise HarnessError(f"{where}: per_sample[{i}] must be an object")
        for key in REQUIRED_SAMPLE_FIELDS:
            if not isinstance(row.get(key), str):
                raise HarnessError(
                    f"{where}: per_sample[{i}] missing or non-string field {key!r}",
                    "regenerate the file",
                )


def _from_dict(data: dict[str, Any], path: str) -> ResultFile:
    check_result_dict(data, path)
    return ResultFile(
        path=path,
        condition=data["condition"],
        direction=data["direction"],
        seed=data["seed"],
        deterministic=bool(data["deterministic"]),
        config=data["config"],
        models=data["models"],
        injection=data["injection"],
        per_sample=tuple(data["per_sample"]),
        metrics=data["metrics"],
        diagnostics=data["diagnostics"],
        raw=data,
    )


def load_result_file(path: str | os.PathLike[str]) -> ResultFile:
    """Load and schema-check one result file."""
    p = Path(path)
    try:
        text = read_text_bounded(p, "result file")  # a FIFO or /dev/zero is refused, not read
    except FileNotFoundError:
        raise HarnessError(f"result file not found: {p}") from None
    except UnicodeDecodeError:
        raise HarnessError(f"{p}: not UTF-8 text", "the file is corrupt; regenerate it") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(
            f"{p}: truncated or corrupt JSON ({exc.msg} at line {exc.lineno})",
            "delete the file and re-run; the runner resumes and rewrites it",
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, 10^5 nested lists
        raise HarnessError(
            f"{p}: unreadable JSON ({type(exc).__name__}: {str(exc)[:80]})",
            "delete the file and re-run; the runner resumes and rewrites it",
        ) from None
    return _from_dict(data, str(p))


def write_result_file(directory: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    """Validate ``data`` against the schema and write it atomically under its canonical name."""
    check_result_dict(data, "result to write")
    cond = CONDITIONS.get(data["condition"])
    alpha = None
    if cond is not None and cond.alpha is not None:
        inj = data["injection"]
        alpha = inj.get("alpha")
    name = result_filename(data["condition"], data["direction"], data["seed"], alpha)
    return atomic_write_json(Path(directory) / name, data)


def _protocol_hash(f: ResultFile) -> Any:
    prov = f.raw.get("provenance")
    return prov.get("protocol_hash") if isinstance(prov, dict) else None


class ResultSet:
    """Result files from one or more directories, indexed by (condition, direction, seed)."""

    def __init__(self, files: Iterable[ResultFile]) -> None:
        self.files: list[ResultFile] = list(files)
        self.by_key: dict[ResultKey, ResultFile] = {}
        self.duplicates: list[tuple[ResultFile, ResultFile]] = []
        for f in self.files:
            if f.key in self.by_key:
                self.duplicates.append((self.by_key[f.key], f))
            else:
                self.by_key[f.key] = f

    @classmethod
    def from_dirs(cls, *dirs: str | os.PathLike[str]) -> ResultSet:
        """Load every ``*.json`` result file directly inside each directory (sorted by name)."""
        files: list[ResultFile] = []
        for d in dirs:
            p = Path(d)
            if not p.is_dir():
                raise HarnessError(
                    f"result directory not found: {p}", "pass a folder of h1_*.json result files"
                )
            files.extend(load_result_file(f) for f in sorted(p.glob("*.json")))
        return cls(files)

    def check_consistent(self, protocol: Any = None, artifact: str | None = None) -> None:
        """Refuse a set that is empty, mixes eval sets, protocols or runs (provenance), holds a
        copy of a run under another seed's name, or rows that cannot be paired: empty golds,
        ids whose gold differs between files, ids or golds not in the eval set the files name
        (found by their ``clean_eval_hash``: ``protocol``'s or a shipped protocol's; see
        :mod:`harness.analysis.integrity`).

        Raises :class:`HarnessError` naming one file of each kind; ``validate`` lists them all.
        """
        from harness.analysis import integrity

        if not self.files:
            raise HarnessError(
                "no result files (*.json) in the given folders",
                "pass folders of h1_*.json result files (python -m harness run writes them)",
            )
        fix = "keep one complete file per run (python -m harness validate lists every problem)"
        if self.duplicates:
            a, b = self.duplicates[0]
            raise HarnessError(
                f"{len(self.duplicates)} run(s) appear twice: {a.label} in {a.name} and "
                f"{Path(b.path).name}"
                + (" (different folders)" if Path(a.path).parent != Path(b.path).parent else ""),
                fix,
            )
        for f in self.files:
            ids = [r["sample_id"] for r in f.per_sample]
            if not ids:
                raise HarnessError(f"{f.name} has no rows (per_sample is empty)", fix)
            if len(set(ids)) != len(ids):
                raise HarnessError(f"{f.name} repeats {len(ids) - len(set(ids))} sample id(s)", fix)
        for direction in self.directions():
            full = [
                f
                for f in self.files
                if f.direction == direction
                and CONDITIONS.get(f.condition, None) is not None
                and CONDITIONS[f.condition].group != "strict"
            ]
            sizes = sorted({f.n for f in full})
            if len(sizes) > 1:
                common = max(sizes, key=lambda n: sum(1 for f in full if f.n == n))
                odd = next(f for f in full if f.n != common)
                raise HarnessError(
                    f"{odd.name} has {odd.n} rows where the other {direction} files have "
                    f"{common}: pooled pairs would silently shrink",
                    fix,
                )
        for what, value in (
            ("eval hashes (config.clean_eval_hash)", lambda f: f.config.get("clean_eval_hash")),
            ("protocol hashes (provenance.protocol_hash)", _protocol_hash),
        ):
            seen: dict[Any, str] = {}
            for f in self.files:
                v = value(f)
                if v is not None:
                    seen.setdefault(v if isinstance(v, str) else repr(v), f.name)
            if len(seen) > 1:
                (a, fa), (b, fb) = list(seen.items())[:2]
                raise HarnessError(
                    f"result files mix {len(seen)} {what}: {str(a)[:12]}... in {fa}, "
                    f"{str(b)[:12]}... in {fb}",
                    "pass folders from one run (python -m harness validate lists every file)",
                )
        for first, copy in integrity.content_copies(self.files)[:1]:
            raise HarnessError(
                f"{first.name} and {copy.name} are identical apart from the seed: one run under two "
                "names would be counted twice",
                "delete the copy and run the missing seed (python -m harness run resumes)",
            )
        for problem in integrity.provenance_problems(self.files)[:1]:
            raise HarnessError(
                f"result files are not one run's: {problem}",
                "pass folders from one run (python -m harness validate lists every file)",
            )
        eval_path = integrity.find_eval_file(self.files, protocol, artifact)
        gold = None
        if eval_path is not None:
            from harness.analysis.evalset import load_evalset

            gold = {r.sample_id: r.answer for r in load_evalset(eval_path).rows}
        for problem in integrity.row_problems(self.files, gold)[:1]:
            raise HarnessError(
                f"rows cannot be paired: {problem}"
                + (f" ({eval_path.name})" if eval_path and "eval set" in problem else ""),
                "regenerate the file from the eval set (python -m harness validate --eval "
                "PATH lists every row)",
            )

    def __iter__(self) -> Iterator[ResultFile]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def runs(self, condition: str, direction: str = "fwd") -> list[ResultFile]:
        """The runs of one condition in one direction, deterministic first, then by seed."""
        runs = [f for k, f in self.by_key.items() if k[0] == condition and k[1] == direction]
        return sorted(runs, key=lambda f: -1 if f.seed is None else f.seed)

    def conditions(self, direction: str | None = None) -> list[str]:
        """Conditions present, in registry order then alphabetical for unknown ones."""
        present = {k[0] for k in self.by_key if direction is None or k[1] == direction}
        order = {name: i for i, name in enumerate(CONDITIONS)}
        return sorted(present, key=lambda c: (order.get(c, len(order)), c))

    def directions(self) -> list[str]:
        return sorted({k[1] for k in self.by_key})
