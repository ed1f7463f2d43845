"""The validation report: is a folder of result files a complete, consistent final run?

Blocking checks fail the report (exit code 1 from the CLI); advisory checks are disclosed
caveats (for example the full-n shuffle's self-fallbacks, or appendix files beside the grid).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.analysis.evalset import load_evalset
from harness.analysis.results import ResultFile, load_result_file, result_filename
from harness.conditions import EXTENSION_CONDITIONS, get_condition
from harness.errors import HarnessError
from harness.io import sha256_file
from harness.protocol import Protocol

__all__ = ["Check", "ValidationReport", "expected_files", "validate"]


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


def expected_files(
    protocol: Protocol, *, include_strict: bool = False, extension_only: bool = False
) -> dict[str, tuple[str, str, int | None]]:
    """File name -> (condition, direction, seed) of every file the protocol's grid must produce.

    ``extension_only``: the files of the extension conditions instead (beyond the paper;
    checked like the grid when present, never required).
    """
    names = list(protocol.run.conditions)
    if include_strict:
        names += list(protocol.run.strict_conditions)
    if extension_only:  # every registered extension, listed in the protocol or run by hand
        names = list(dict.fromkeys(protocol.run.extension_conditions + EXTENSION_CONDITIONS))
    out = {}
    for direction in protocol.run.directions:
        for name in names:
            cond = get_condition(name)
            seeds: tuple[int | None, ...] = (None,) if cond.deterministic else protocol.run.seeds
            for seed in seeds:
                fname = result_filename(name, direction, seed, protocol.alpha_for(cond.alpha))
                out[fname] = (name, direction, seed)
    return out


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


def validate(
    dirs: list[str | os.PathLike[str]],
    protocol: Protocol,
    *,
    include_strict: bool = False,
    eval_path: str | os.PathLike[str] | None = None,
    only: Collection[str] | None = None,
) -> ValidationReport:
    """Validate the result files in ``dirs`` against ``protocol``.

    ``only``: file names to consider (e.g. the main grid's); other files are not read.
    """
    checks: list[Check] = []
    expected = expected_files(protocol, include_strict=include_strict)
    loaded: list[ResultFile] = []
    load_errors: list[str] = []
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
    for path in paths:
        try:
            loaded.append(load_result_file(path))
        except HarnessError as exc:
            load_errors.append(str(exc))
    _check(
        checks,
        "required_fields",
        True,
        load_errors,
        f"{len(loaded)} files parse with every required field",
    )

    by_name: dict[str, list[ResultFile]] = {}
    for f in loaded:
        by_name.setdefault(f.name, []).append(f)
    missing = [n for n in expected if n not in by_name]
    present = sum(1 for n in expected if n in by_name)
    _check(
        checks,
        "expected_files_present",
        True,
        [f"missing {n}" for n in missing],
        f"{present} of {len(expected)} expected files present",
    )

    keys = Counter(f.key for f in loaded)
    dups = [f"{c}/{d}/{s} appears {k} times" for (c, d, s), k in keys.items() if k > 1]
    _check(checks, "no_duplicate_runs", True, dups, "each (condition, direction, seed) once")

    # Extension files (beyond the paper) are optional; present ones are checked like the grid.
    expected_ext = expected_files(protocol, extension_only=True)
    known = {**expected, **expected_ext}
    grid = [f for f in loaded if f.name in known]
    extra = sorted(f.name for f in loaded if f.name not in known)
    checks.append(
        Check(
            "extra_files",
            False,
            not extra,
            f"{len(extra)} files outside the expected grid (appendix or stray): "
            + ", ".join(extra[:4])
            + (" ..." if len(extra) > 4 else "")
            if extra
            else "no files outside the expected grid",
        )
    )

    ext = sorted(f.name for f in loaded if f.name in expected_ext)
    if ext:
        checks.append(
            Check(
                "extension_files",
                False,
                True,
                f"{len(ext)} extension files (beyond the paper) checked with the grid",
            )
        )

    # Name and content must agree.
    mislabeled = [f"{f.name} holds {f.label}" for f in grid if f.key != known[f.name]]
    _check(
        checks, "file_names_match_content", True, mislabeled, "every file name matches its content"
    )

    strict_names = set(protocol.run.strict_conditions)
    # A run limited to the first k eval rows (``run --limit k``) declares it in provenance.
    limits = {_h(_prov(f).get("n_eval_rows")) for f in loaded}
    n_full, n_strict = protocol.eval.n, protocol.eval.strict_n
    if len(limits) == 1 and isinstance(k := next(iter(limits)), int) and k < protocol.eval.n:
        n_full, n_strict = k, k - _singleton_buckets(grid, strict_names)
        checks.append(
            Check("limited_run", False, False, f"a --limit run: {k} of {protocol.eval.n} eval rows")
        )
    n_problems = []
    for f in grid:
        want = n_strict if f.condition in strict_names else n_full
        ids = [r["sample_id"] for r in f.per_sample]
        if f.n != want:
            n_problems.append(f"{f.name}: n={f.n}, expected {want}")
        if len(set(ids)) != len(ids):
            n_problems.append(f"{f.name}: duplicate sample ids")
        declared = f.config.get("n_samples")
        if declared is not None and declared != f.n and f.condition not in strict_names:
            n_problems.append(f"{f.name}: config.n_samples={declared} but {f.n} rows")
    _check(
        checks,
        "sample_counts",
        True,
        n_problems,
        f"n={n_full} per file" + (f" ({n_strict} strict)" if include_strict else ""),
    )

    hashes = Counter(f.config.get("clean_eval_hash") for f in loaded)
    hash_problems = [
        f"{f.name}: clean_eval_hash {str(f.config.get('clean_eval_hash'))[:12]}..."
        for f in loaded
        if f.config.get("clean_eval_hash") != protocol.eval.sha256
    ]
    if len(hashes) > 1:
        hash_problems.insert(0, f"files mix {len(hashes)} different eval hashes")
    _check(
        checks,
        "clean_eval_hash",
        True,
        hash_problems,
        f"every file carries {protocol.eval.sha256[:12]}...",
    )

    if eval_path is not None and Path(eval_path).is_file():
        digest = sha256_file(eval_path)
        _check(
            checks,
            "eval_file_hash",
            True,
            [] if digest == protocol.eval.sha256 else [f"{eval_path} has SHA-256 {digest[:12]}..."],
            f"eval file SHA-256 equals the protocol's ({digest[:12]}...)",
        )
        gold = {r.sample_id: r.answer for r in load_evalset(eval_path).rows}
        id_problems = []
        for f in grid:
            bad = [r["sample_id"] for r in f.per_sample if gold.get(r["sample_id"]) != r["gold"]]
            if bad:
                id_problems.append(
                    f"{f.name}: {len(bad)} rows whose id or gold is not in the eval set (first {bad[0]})"
                )
        _check(
            checks,
            "samples_match_eval_set",
            True,
            id_problems,
            "every sample id and gold answer comes from the eval set",
        )
    else:
        checks.append(
            Check(
                "eval_file_hash",
                False,
                False,
                "eval file not available; hash checked across files only",
            )
        )

    protos = Counter(_h(_prov(f).get("protocol_hash")) for f in loaded)
    protos.pop(None, None)
    _check(
        checks,
        "single_protocol",
        True,
        [f"files mix {len(protos)} protocol hashes: {', '.join(sorted(protos))}"]
        if len(protos) > 1
        else [],
        "no mixing of protocols",
    )

    want_gen = protocol.decoding.generation_config()
    want_relay = protocol.decoding.relay_generation_config()
    dec_problems = []
    for f in grid:
        gen = f.config.get("generation") or {}
        for k, v in want_gen.items():
            if gen.get(k) != v:
                dec_problems.append(f"{f.name}: generation.{k}={gen.get(k)!r}, protocol {v!r}")
        if f.condition == "nl_relay":
            sg = f.config.get("sender_generation") or {}
            for k, v in want_relay.items():
                if sg.get(k) != v:
                    dec_problems.append(
                        f"{f.name}: sender_generation.{k}={sg.get(k)!r}, protocol {v!r}"
                    )
        if f.config.get("max_length") != protocol.prompt.max_length:
            dec_problems.append(f"{f.name}: max_length={f.config.get('max_length')!r}")
    _check(
        checks,
        "decoding_parameters",
        True,
        dec_problems,
        "greedy, {max_new_tokens} new tokens, repetition penalty {repetition_penalty}, "
        "no-repeat {no_repeat_ngram_size}-gram, relay {r} tokens".format(
            **want_gen, r=want_relay["max_new_tokens"]
        ),
    )

    mm = []
    for f in loaded:
        seq = f.diagnostics.get("seq_len_mismatch_count")
        tok = f.diagnostics.get("token_mismatch_count")
        rows_tok = sum(1 for r in f.per_sample if r.get("token_ids_match") is False)
        rows_seq = sum(1 for r in f.per_sample if r.get("seq_len_match") is False)
        if seq != 0 or tok != 0 or rows_tok or rows_seq:
            mm.append(
                f"{f.name}: seq_len_mismatch={seq}, token_mismatch={tok}, rows {rows_seq}/{rows_tok}"
            )
    _check(
        checks,
        "sequence_and_token_mismatch",
        True,
        mm,
        "seq_len_mismatch_count == token_mismatch_count == 0",
    )

    if include_strict:
        excluded_want = n_full - n_strict
        st = []
        for f in grid:
            if f.condition not in strict_names:
                continue
            fb = f.diagnostics.get("shuffle_self_fallback_count")
            ex = f.injection.get("shuffle_excluded_singleton_count")
            selfs = sum(
                1
                for r in f.per_sample
                if r.get("shuffle_self_fallback") or r.get("shuffle_donor_idx") == r.get("idx")
            )
            if fb != 0 or selfs:
                st.append(f"{f.name}: self-fallback {fb} ({selfs} rows)")
            if ex != excluded_want:
                st.append(f"{f.name}: excluded singletons {ex}, expected {excluded_want}")
            plen = {_h(r.get("idx")): r.get("prompt_len_b") for r in f.per_sample}
            cross = sum(
                1
                for r in f.per_sample
                if _h(r.get("shuffle_donor_idx")) in plen
                and plen[_h(r["shuffle_donor_idx"])] != r.get("prompt_len_b")
            )
            if cross:
                st.append(f"{f.name}: {cross} donors from another prompt-length bucket")
        _check(
            checks,
            "strict_shuffle_invariants",
            True,
            st,
            f"zero self-fallback, {excluded_want} singletons excluded",
        )

    fulln = [
        (f.name, f.diagnostics.get("shuffle_self_fallback_count"))
        for f in grid
        if f.condition == "shuffled_translation"
    ]
    counts = sorted({c for _, c in fulln})
    checks.append(
        Check(
            "full_n_shuffle_self_fallback",
            False,
            all(c == 0 for c in counts),
            f"full-n shuffled files report self-fallback counts {counts} (disclosed caveat)"
            if fulln
            else "no full-n shuffled files",
        )
    )
    return ValidationReport(expected_files=len(expected), present_files=present, checks=checks)
