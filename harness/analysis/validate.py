"""The validation report: is a folder of result files a complete, consistent final run?

Blocking checks fail the report (exit code 1 from the CLI); advisory checks are disclosed
caveats (for example the full-n shuffle's self-fallbacks, or appendix files beside the grid).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis import integrity
from harness.analysis.evalset import load_evalset
from harness.analysis.results import ResultFile, load_result_file
from harness.conditions import CONDITIONS
from harness.errors import HarnessError
from harness.io import sha256_file
from harness.protocol import Protocol
from harness.spec.jobs import Job, expected

__all__ = ["CHECKS", "Check", "ValidationReport", "validate"]


@dataclass(frozen=True)
class Check:
    name: str
    blocking: bool
    passed: bool
    detail: str


@dataclass
class ValidationReport:
    expected_files: int
    present_files: int
    checks: list[Check] = field(default_factory=list)

    @property
    def blocking_passed(self) -> bool:
        return all(c.passed for c in self.checks if c.blocking)

    def failures(self, blocking: bool | None = True) -> list[Check]:
        return [
            c for c in self.checks if not c.passed and (blocking is None or c.blocking == blocking)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "expected_files": self.expected_files,
            "present_files": self.present_files,
            "blocking_passed": self.blocking_passed,
            "checks": [asdict(c) for c in self.checks],
        }


def _cond(name: str, what: str) -> bool:
    """Whether the registered condition ``name`` is the relay (``relay``) or a full-n shuffle
    (``full_shuffle``), from its registration; unknown names are neither."""
    c = CONDITIONS.get(name)
    if c is None:
        return False
    if what == "relay":
        return c.relay
    return c.plan is not None and c.plan.shuffle == "full"


def _check(
    checks: list[Check], name: str, blocking: bool, problems: list[str], ok_detail: str
) -> None:
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        checks.append(Check(name, blocking, False, "; ".join(problems[:5]) + more))
    else:
        checks.append(Check(name, blocking, True, ok_detail))


def _singleton_buckets(grid: list[ResultFile], strict_names: set[str]) -> int:
    """Prompt-length buckets holding one sample, from a full-n file's per-sample lengths."""
    for f in grid:
        if f.condition not in strict_names and f.per_sample and "prompt_len_b" in f.per_sample[0]:
            lengths = Counter(_h(r["prompt_len_b"]) for r in f.per_sample)
            return sum(1 for v in lengths.values() if v == 1)
    return 0


def _h(value: Any) -> Any:
    """``value`` if hashable, else its repr (a malformed file must not crash the report)."""
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def _prov(f: ResultFile) -> dict[str, Any]:
    prov = f.raw.get("provenance")
    return prov if isinstance(prov, dict) else {}


@dataclass
class _Files:
    """What every check reads: the protocol, the loaded files and the grid's expectations."""

    protocol: Protocol
    include_strict: bool
    eval_path: str | os.PathLike[str] | None
    loaded: list[ResultFile]
    load_errors: list[str]
    expected: dict[str, Job]
    expected_ext: dict[str, Job]
    n_full: int = 0
    n_strict: int = 0

    @property
    def known(self) -> dict[str, tuple[str, str, int | None]]:
        """File name -> (condition, direction, seed) of every grid or extension file."""
        both = {**self.expected, **self.expected_ext}
        return {name: (j.condition, j.direction, j.seed) for name, j in both.items()}

    @property
    def grid(self) -> list[ResultFile]:
        """The loaded files of the expected grid and of present extension conditions."""
        known = self.known
        return [f for f in self.loaded if f.name in known]

    @property
    def strict_names(self) -> set[str]:
        return set(self.protocol.run.strict_conditions)

    @property
    def present(self) -> int:
        names = {f.name for f in self.loaded}
        return sum(1 for n in self.expected if n in names)


def _result(name: str, blocking: bool, problems: list[str], ok_detail: str) -> Check:
    out: list[Check] = []
    _check(out, name, blocking, problems, ok_detail)
    return out[0]


def check_required_fields(v: _Files) -> Check:
    """Every file parses with every required field (blocking)."""
    return _result(
        "required_fields",
        True,
        v.load_errors,
        f"{len(v.loaded)} files parse with every required field",
    )


def check_expected_files_present(v: _Files) -> Check:
    """Every file the protocol's grid names is present (blocking)."""
    names = {f.name for f in v.loaded}
    missing = [n for n in v.expected if n not in names]
    return _result(
        "expected_files_present",
        True,
        [f"missing {n}" for n in missing],
        f"{v.present} of {len(v.expected)} expected files present",
    )


def check_no_duplicate_runs(v: _Files) -> Check:
    """Each (condition, direction, seed) appears once, and no file is a copy of another
    under another seed's name (identical apart from the seed) (blocking)."""
    keys = Counter(f.key for f in v.loaded)
    dups = [f"{c}/{d}/{s} appears {k} times" for (c, d, s), k in keys.items() if k > 1]
    dups += [
        f"{a.name} and {b.name} are identical apart from the seed (one run under two names)"
        for a, b in integrity.content_copies(v.loaded)
    ]
    return _result(
        "no_duplicate_runs", True, dups, "each (condition, direction, seed) once, no copies"
    )


def check_extra_files(v: _Files) -> Check:
    """Files outside the grid and its extensions (advisory: appendix or stray)."""
    known = v.known
    extra = sorted(f.name for f in v.loaded if f.name not in known)
    return Check(
        "extra_files",
        False,
        not extra,
        f"{len(extra)} files outside the expected grid (appendix or stray): "
        + ", ".join(extra[:4])
        + (" ..." if len(extra) > 4 else "")
        if extra
        else "no files outside the expected grid",
    )


def check_extension_files(v: _Files) -> Check | None:
    """Extension files (beyond the paper) present: checked with the grid, never required."""
    ext = sorted(f.name for f in v.loaded if f.name in v.expected_ext)
    if not ext:
        return None
    return Check(
        "extension_files",
        False,
        True,
        f"{len(ext)} extension files (beyond the paper) checked with the grid",
    )


def check_file_names_match_content(v: _Files) -> Check:
    """Each file's name agrees with the condition, direction and seed it holds (blocking)."""
    known = v.known
    mislabeled = [f"{f.name} holds {f.label}" for f in v.grid if f.key != known[f.name]]
    return _result(
        "file_names_match_content", True, mislabeled, "every file name matches its content"
    )


def check_limited_run(v: _Files) -> Check | None:
    """A run limited to the first k eval rows (``run --limit k``) declares it in provenance;
    the sample counts then expect k rows (advisory)."""
    limits = {_h(_prov(f).get("n_eval_rows")) for f in v.loaded}
    v.n_full, v.n_strict = v.protocol.eval.n, v.protocol.eval.strict_n
    if len(limits) == 1 and isinstance(k := next(iter(limits)), int) and k < v.protocol.eval.n:
        v.n_full, v.n_strict = k, k - _singleton_buckets(v.grid, v.strict_names)
        return Check(
            "limited_run", False, False, f"a --limit run: {k} of {v.protocol.eval.n} eval rows"
        )
    return None


def check_sample_counts(v: _Files) -> Check:
    """Each grid file holds the expected rows once each; without the eval file, no gold is
    empty and each sample id keeps one gold across the files (blocking)."""
    problems = []
    for f in v.grid:
        strict = f.condition in v.strict_names
        want = v.n_strict if strict else v.n_full
        ids = [r["sample_id"] for r in f.per_sample]
        if f.n != want:
            problems.append(f"{f.name}: n={f.n}, expected {want}")
        if len(set(ids)) != len(ids):
            problems.append(f"{f.name}: duplicate sample ids")
        declared = f.config.get("n_samples")
        if declared is not None and declared != f.n and not strict:
            problems.append(f"{f.name}: config.n_samples={declared} but {f.n} rows")
    with_eval = v.eval_path is not None and Path(v.eval_path).is_file()
    problems += [  # empty golds; and without the eval file, ids whose gold differs
        p for p in integrity.row_problems(v.grid) if not with_eval or "empty gold" in p
    ]
    return _result(
        "sample_counts",
        True,
        problems,
        f"n={v.n_full} per file" + (f" ({v.n_strict} strict)" if v.include_strict else ""),
    )


def check_clean_eval_hash(v: _Files) -> Check:
    """Every file carries the protocol's clean-eval hash (blocking)."""
    want = v.protocol.eval.sha256
    hashes = Counter(f.config.get("clean_eval_hash") for f in v.loaded)
    problems = [
        f"{f.name}: clean_eval_hash {str(f.config.get('clean_eval_hash'))[:12]}..."
        for f in v.loaded
        if f.config.get("clean_eval_hash") != want
    ]
    if len(hashes) > 1:
        problems.insert(0, f"files mix {len(hashes)} different eval hashes")
    return _result("clean_eval_hash", True, problems, f"every file carries {want[:12]}...")


def check_eval_file(v: _Files) -> list[Check]:
    """The eval file's SHA-256 is the protocol's, and every sample id and gold answer comes
    from it (blocking); advisory when the eval file is not available."""
    path = v.eval_path
    if path is None:  # the eval the files name by their hash, where it is found here
        path = integrity.find_eval_file(v.loaded, v.protocol)
    if path is None or not Path(path).is_file():
        return [
            Check(
                "eval_file_hash",
                False,
                False,
                "eval file not available; hash checked across files only",
            )
        ]
    digest = sha256_file(path)
    out = [
        _result(
            "eval_file_hash",
            True,
            [] if digest == v.protocol.eval.sha256 else [f"{path} has SHA-256 {digest[:12]}..."],
            f"eval file SHA-256 equals the protocol's ({digest[:12]}...)",
        )
    ]
    gold = {r.sample_id: r.answer for r in load_evalset(path).rows}
    problems = []
    for f in v.grid:
        bad = [r["sample_id"] for r in f.per_sample if gold.get(r["sample_id"]) != r["gold"]]
        if bad:
            problems.append(
                f"{f.name}: {len(bad)} rows whose id or gold is not in the eval set (first {bad[0]})"
            )
    out.append(
        _result(
            "samples_match_eval_set",
            True,
            problems,
            "every sample id and gold answer comes from the eval set",
        )
    )
    return out


def check_single_protocol(v: _Files) -> Check:
    """The files do not mix protocol hashes, and come from one run: all or none carry
    provenance (none: the paper's artifact), and those that do agree on its identity fields
    and inputs (:func:`harness.analysis.integrity.provenance_problems`) (blocking)."""
    protos = Counter(_h(_prov(f).get("protocol_hash")) for f in v.loaded)
    protos.pop(None, None)
    problems = (
        [f"files mix {len(protos)} protocol hashes: {', '.join(sorted(map(str, protos)))}"]
        if len(protos) > 1
        else []
    )
    problems += [p for p in integrity.provenance_problems(v.loaded) if "protocol_hash" not in p]
    return _result("single_protocol", True, problems, "no mixing of protocols or runs")


def check_decoding_parameters(v: _Files) -> Check:
    """Every grid file serialises the protocol's decoding (and the relay's) (blocking)."""
    want_gen = v.protocol.decoding.generation_config()
    want_relay = v.protocol.decoding.relay_generation_config()
    problems = []
    for f in v.grid:
        gen = f.config.get("generation") or {}
        for k, val in want_gen.items():
            if gen.get(k) != val:
                problems.append(f"{f.name}: generation.{k}={gen.get(k)!r}, protocol {val!r}")
        if _cond(f.condition, "relay"):
            sg = f.config.get("sender_generation") or {}
            for k, val in want_relay.items():
                if sg.get(k) != val:
                    problems.append(
                        f"{f.name}: sender_generation.{k}={sg.get(k)!r}, protocol {val!r}"
                    )
        if f.config.get("max_length") != v.protocol.prompt.max_length:
            problems.append(f"{f.name}: max_length={f.config.get('max_length')!r}")
    return _result(
        "decoding_parameters",
        True,
        problems,
        "greedy, {max_new_tokens} new tokens, repetition penalty {repetition_penalty}, "
        "no-repeat {no_repeat_ngram_size}-gram, relay {r} tokens".format(
            **want_gen, r=want_relay["max_new_tokens"]
        ),
    )


def check_sequence_and_token_mismatch(v: _Files) -> Check:
    """Zero sequence and token mismatches, in each file's counts and in every row (blocking)."""
    problems = []
    for f in v.loaded:
        seq = f.diagnostics.get("seq_len_mismatch_count")
        tok = f.diagnostics.get("token_mismatch_count")
        rows_tok = sum(1 for r in f.per_sample if r.get("token_ids_match") is False)
        rows_seq = sum(1 for r in f.per_sample if r.get("seq_len_match") is False)
        if seq != 0 or tok != 0 or rows_tok or rows_seq:
            problems.append(
                f"{f.name}: seq_len_mismatch={seq}, token_mismatch={tok}, rows {rows_seq}/{rows_tok}"
            )
    return _result(
        "sequence_and_token_mismatch",
        True,
        problems,
        "seq_len_mismatch_count == token_mismatch_count == 0",
    )


def check_strict_shuffle_invariants(v: _Files) -> Check | None:
    """Strict matched shuffles: zero self-fallback in counts and rows, the singleton buckets
    excluded, donors from the same prompt-length bucket (blocking; with the strict files)."""
    if not v.include_strict:
        return None
    excluded_want = v.n_full - v.n_strict
    problems = []
    for f in v.grid:
        if f.condition not in v.strict_names:
            continue
        fb = f.diagnostics.get("shuffle_self_fallback_count")
        ex = f.injection.get("shuffle_excluded_singleton_count")
        selfs = sum(
            1
            for r in f.per_sample
            if r.get("shuffle_self_fallback") or r.get("shuffle_donor_idx") == r.get("idx")
        )
        if fb != 0 or selfs:
            problems.append(f"{f.name}: self-fallback {fb} ({selfs} rows)")
        if ex != excluded_want:
            problems.append(f"{f.name}: excluded singletons {ex}, expected {excluded_want}")
        plen = {_h(r.get("idx")): r.get("prompt_len_b") for r in f.per_sample}
        cross = sum(
            1
            for r in f.per_sample
            if _h(r.get("shuffle_donor_idx")) in plen
            and plen[_h(r["shuffle_donor_idx"])] != r.get("prompt_len_b")
        )
        if cross:
            problems.append(f"{f.name}: {cross} donors from another prompt-length bucket")
    return _result(
        "strict_shuffle_invariants",
        True,
        problems,
        f"zero self-fallback, {excluded_want} singletons excluded",
    )


def check_full_n_shuffle_self_fallback(v: _Files) -> Check:
    """The full-n shuffle's self-fallbacks, a disclosed caveat (advisory)."""
    fulln = [
        (f.name, f.diagnostics.get("shuffle_self_fallback_count"))
        for f in v.grid
        if _cond(f.condition, "full_shuffle")
    ]
    counts = sorted({_h(c) for _, c in fulln}, key=repr)
    return Check(
        "full_n_shuffle_self_fallback",
        False,
        all(c == 0 for c in counts),
        f"full-n shuffled files report self-fallback counts {counts} (disclosed caveat)"
        if fulln
        else "no full-n shuffled files",
    )


# The checks, in report order; each returns a Check, several, or None (not applicable).
CHECKS = (
    check_required_fields,
    check_expected_files_present,
    check_no_duplicate_runs,
    check_extra_files,
    check_extension_files,
    check_file_names_match_content,
    check_limited_run,
    check_sample_counts,
    check_clean_eval_hash,
    check_eval_file,
    check_single_protocol,
    check_decoding_parameters,
    check_sequence_and_token_mismatch,
    check_strict_shuffle_invariants,
    check_full_n_shuffle_self_fallback,
)


def validate(
    dirs: Sequence[str | os.PathLike[str]],
    protocol: Protocol,
    *,
    include_strict: bool = False,
    eval_path: str | os.PathLike[str] | None = None,
    only: Collection[str] | None = None,
) -> ValidationReport:
    """Validate the result files in ``dirs`` against ``protocol``: run every check of
    :data:`CHECKS`, each reported by name.

    ``only``: file names to consider (e.g. the main grid's); other files are not read.
    """
    paths: list[Path] = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise HarnessError(
                f"result directory not found: {p}", "pass a folder of h1_*.json files"
            )
        paths.extend(sorted(p.glob("*.json")))
    if only is not None:
        paths = [p for p in paths if p.name in only]
    loaded: list[ResultFile] = []
    load_errors: list[str] = []
    for path in paths:
        try:
            loaded.append(load_result_file(path))
        except HarnessError as exc:
            load_errors.append(str(exc))
    files = _Files(
        protocol=protocol,
        include_strict=include_strict,
        eval_path=eval_path,
        loaded=loaded,
        load_errors=load_errors,
        expected=expected(protocol, ("primary", "strict") if include_strict else ("primary",)),
        expected_ext=expected(protocol, ("extension",), every_extension=True),
    )
    checks: list[Check] = []
    for check in CHECKS:
        got = check(files)
        if isinstance(got, Check):
            checks.append(got)
        elif got:
            checks.extend(got)
    return ValidationReport(
        expected_files=len(files.expected), present_files=files.present, checks=checks
    )
