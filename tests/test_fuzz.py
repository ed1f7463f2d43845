"""Fuzzing the input boundaries: nothing but the documented errors may escape.

The eval loader, the result loader (and validate / summarize / compare / audit on what it
accepts), the metrics and the statistics get random bytes, random unicode, random JSON (NaN,
inf, huge strings, wrong types, missing fields). The only allowed failures are
:class:`HarnessError` (loaders, validation) and :class:`ValueError` (statistics).
"""

from __future__ import annotations

import copy
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.analysis.evalset import load_evalset
from harness.analysis.metrics import METRICS, normalize, score
from harness.analysis.results import ResultSet, load_result_file
from harness.analysis.stats import mcnemar_exact, percentile_bootstrap_ci, tost_paired
from harness.errors import HarnessError
from harness.protocol import load_protocol
from tests.strategies import any_text, eval_row_fields, json_values

FUZZ = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


_ROOT: list[Path] = []


@pytest.fixture(autouse=True, scope="module")
def _scratch(tmp_path_factory: pytest.TempPathFactory):
    """One scratch folder for every hypothesis example of this module (removed by pytest)."""
    _ROOT.append(tmp_path_factory.mktemp("fuzz"))
    yield
    _ROOT.clear()


def _tmp() -> Path:
    return Path(tempfile.mkdtemp(prefix="x", dir=_ROOT[0]))


# -- the eval loader ---------------------------------------------------------------------


def _load_eval_bytes(data: bytes) -> None:
    path = _tmp() / "eval.jsonl"
    path.write_bytes(data)
    try:
        es = load_evalset(path)
    except HarnessError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        return
    assert len(es) >= 1 and len({r.sample_id for r in es.rows}) == len(es)


@FUZZ
@given(st.binary(max_size=300))
def test_eval_loader_survives_random_bytes(data: bytes) -> None:
    _load_eval_bytes(data)


@FUZZ
@given(st.lists(st.text(max_size=80), max_size=6))
def test_eval_loader_survives_random_unicode_lines(lines: list[str]) -> None:
    _load_eval_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.lists(eval_row_fields | json_values, min_size=0, max_size=5))
def test_eval_loader_survives_rows_of_any_shape(rows: list) -> None:
    text = "\n".join(json.dumps(r, allow_nan=True) for r in rows)
    _load_eval_bytes(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.lists(st.tuples(any_text, any_text, any_text), min_size=1, max_size=5))
def test_eval_loader_reads_every_well_formed_row(rows: list[tuple[str, str, str]]) -> None:
    path = _tmp() / "eval.jsonl"
    path.write_text(
        "".join(json.dumps({"context": c, "question": q, "answer": a}) + "\n" for c, q, a in rows),
        encoding="utf-8",
    )
    es = load_evalset(path)
    assert [(r.context, r.question, r.answer) for r in es.rows] == rows


def test_eval_loader_names_a_monster_number_and_deep_nesting(tmp_path: Path) -> None:
    for line in ("9" * 5000, "[" * 100_000 + "]" * 100_000):
        path = tmp_path / "eval.jsonl"
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(HarnessError, match=r"eval.jsonl:1: not valid JSON"):
            load_evalset(path)


# -- the result loader and everything downstream ------------------------------------------

_VALID: dict = {
    "schema_version": "h1_final_runner.v1",
    "condition": "additive",
    "direction": "fwd",
    "seed": 42,
    "deterministic": False,
    "config": {
        "clean_eval_hash": "ab" * 32,
        "n_samples": 2,
        "generation": {"max_new_tokens": 64},
        "layer_rel": 0.67,
        "max_length": 256,
    },
    "models": {},
    "injection": {"mode": "additive"},
    "per_sample": [
        {"sample_id": "a", "gold": "Paris", "prediction": "Paris.", "prompt_len_b": 3},
        {"sample_id": "b", "gold": "Rome", "prediction": "no", "prompt_len_b": 3},
    ],
    "metrics": {"n": 2},
    "diagnostics": {
        "seq_len_mismatch_count": 0,
        "token_mismatch_count": 0,
        "shuffle_self_fallback_count": 0,
    },
}
_PATHS = (
    [(k,) for k in _VALID]
    + [("config", k) for k in _VALID["config"]]
    + [("per_sample", 0, k) for k in _VALID["per_sample"][0]]
    + [
        ("diagnostics", "token_mismatch_count"),
        ("provenance",),
        ("provenance", "protocol_hash"),
        ("provenance", "n_eval_rows"),
        ("config", "sender_generation"),
        ("per_sample", 1, "shuffle_donor_idx"),
        ("per_sample", 1, "idx"),
    ]
)
# A mutation: set a path to a random JSON value, or delete it.
mutations = st.lists(
    st.tuples(st.sampled_from(_PATHS), st.none() | st.just("DELETE") | json_values),
    min_size=1,
    max_size=4,
)


def _mutate(data: dict, path: tuple, value) -> None:
    node = data
    for part in path[:-1]:
        if (isinstance(node, dict) and part in node and isinstance(node[part], (dict, list))) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        elif isinstance(node, dict):
            node[part] = {}
            node = node[part]
        else:
            return
    last = path[-1]
    if isinstance(node, dict):
        if value == "DELETE":
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = None if value == "DELETE" else value


def _downstream(folder: Path) -> None:
    """validate, summarize, compare and audit: a report or HarnessError, nothing else."""
    from harness.analysis.audit import audit
    from harness.analysis.tables import compare, summarize
    from harness.analysis.validate import validate

    proto = load_protocol("paper")
    report = validate([folder], proto)
    assert report.checks
    json.dumps(report.to_json(), allow_nan=True)
    try:
        rs = ResultSet.from_dirs(folder)
    except HarnessError:
        return
    summarize(rs)
    compare(rs, stats=proto.stats)
    audit(rs, proto.audit.conditions, per_file=proto.audit.per_file)


@FUZZ
@given(mutations)
def test_result_loader_accepts_or_names_the_field(muts: list) -> None:
    data = copy.deepcopy(_VALID)
    for path, value in muts:
        _mutate(data, path, value)
    folder = _tmp()
    path = folder / "h1_additive_fwd_seed42.json"
    path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
    try:
        f = load_result_file(path)
    except HarnessError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert f.n == len(data["per_sample"])
    _downstream(folder)


@FUZZ
@given(json_values)
def test_result_loader_survives_any_json_document(value) -> None:
    folder = _tmp()
    path = folder / "h1_no_inject_fwd_deterministic.json"
    path.write_text(json.dumps(value, allow_nan=True), encoding="utf-8")
    with pytest.raises(HarnessError, match=r"h1_no_inject_fwd_deterministic\.json"):
        load_result_file(path)
    _downstream(folder)


@FUZZ
@given(st.binary(max_size=200))
def test_result_loader_survives_random_bytes(data: bytes) -> None:
    folder = _tmp()
    path = folder / "h1_replace_fwd_seed42.json"
    path.write_bytes(data)
    with pytest.raises(HarnessError):
        load_result_file(path)
    _downstream(folder)


@FUZZ
@given(st.text(min_size=1, max_size=20).map(lambda s: s * 1000), st.floats(allow_nan=True))
def test_huge_strings_and_nan_load_and_score(big: str, x: float) -> None:
    data = copy.deepcopy(_VALID)
    data["per_sample"][0]["prediction"] = big
    data["metrics"]["contains_acc"] = x
    folder = _tmp()
    path = folder / "h1_additive_fwd_seed42.json"
    path.write_text(json.dumps(data, allow_nan=True), encoding="utf-8")
    assert load_result_file(path).per_sample[0]["prediction"] == big
    _downstream(folder)


# -- metrics -----------------------------------------------------------------------------


@FUZZ
@given(any_text | st.text(min_size=1, max_size=9).map(lambda s: s * 300), any_text)
def test_every_metric_is_a_bool_for_any_text(prediction: str, gold: str) -> None:
    s = score(prediction, gold)
    assert set(s) == set(METRICS) and all(isinstance(v, bool) for v in s.values())
    assert normalize(normalize(prediction)) == normalize(prediction)


# -- statistics --------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
poisoned = st.lists(finite, max_size=20).flatmap(
    lambda xs: st.sampled_from([math.nan, math.inf, -math.inf]).flatmap(
        lambda bad: st.integers(0, len(xs)).map(lambda i: [*xs[:i], bad, *xs[i:]])
    )
)


@FUZZ
@given(poisoned)
def test_statistics_refuse_nan_and_inf(values: list[float]) -> None:
    with pytest.raises(ValueError, match="NaN or inf"):
        percentile_bootstrap_ci(values, resamples=20)
    with pytest.raises(ValueError, match="NaN or inf"):
        tost_paired(values, -0.02, 0.02)


@pytest.mark.parametrize("empty", [[], np.array([])], ids=["list", "array"])
def test_statistics_refuse_an_empty_sample(empty) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        percentile_bootstrap_ci(empty)
    with pytest.raises(ValueError, match="non-empty"):
        tost_paired(empty, -0.02, 0.02)


@FUZZ
@given(st.lists(finite, min_size=1, max_size=40))
def test_statistics_on_finite_samples_are_finite_and_bounded(values: list[float]) -> None:
    low, high = percentile_bootstrap_ci(values, resamples=50)
    assert min(values) - 1e-6 <= low <= high <= max(values) + 1e-6
    p = tost_paired(values, -0.02, 0.02)
    assert 0.0 <= p <= 1.0
    assert 0.0 <= mcnemar_exact(len(values), 3) <= 1.0


@FUZZ
@given(st.floats(allow_nan=True), st.floats(allow_nan=True))
def test_tost_refuses_bounds_that_are_not_ordered(low: float, high: float) -> None:
    if low < high:
        return
    with pytest.raises(ValueError):
        tost_paired([0.0, 1.0], low, high)


# --- the command line: any arguments give exit 0, 1 or 2 and never a traceback -------------
_cli_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["nan", "-1", "0", "1e309", "word_boundary_contains", "f1", "\ud800", ""]),
    # control characters (an ANSI escape, a carriage return) and numbers beyond the machine
    st.sampled_from(["\x1b[2J\x1b[32mPASS", "row\roverwrite", "\x9b2J", "1000000000", "9" * 40]),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc"]), min_size=1, max_size=4),
)
_cli_options = st.sampled_from(
    [
        "--metric",
        "--tost-low",
        "--tost-high",
        "--protocol",
        "--include-strict-matched",
        "--markdown",
        "--status",
        "--json",
        "--eval",
        "--source",
        "--per-file",
    ]
)


@settings(max_examples=60, deadline=None)
@example(command="summarize", options=[("--json", "\ud800")])  # found by this property
@example(command="claims", options=[("--status", "\ud800")])
@given(
    command=st.sampled_from(
        ["summarize", "compare", "validate", "audit", "claims", "validate-protocol"]
    ),
    options=st.lists(st.tuples(_cli_options, _cli_values), max_size=3),
)
def test_any_command_line_exits_0_1_or_2_without_a_traceback(
    tmp_path_factory, command: str, options: list[tuple[str, str]]
) -> None:
    import contextlib
    import io
    import os

    from harness.cli import main

    root = tmp_path_factory.mktemp("cli")
    argv = [command]
    if command == "validate-protocol":
        argv.append(options[0][1] if options else "mini")
    for opt, value in options:
        if opt in ("--json", "--status", "--eval"):  # paths stay inside the temp folder
            value = str(root / (value.replace("/", "_").replace("\x00", "") or "x"))
        argv += [opt] if opt in ("--include-strict-matched", "--markdown") else [opt, value]
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse: an unknown option or a missing value
                code = exc.code
    finally:
        os.chdir(cwd)
    assert code in (0, 1, 2), (argv, code)
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue()[-500:])
    # nothing from the arguments reaches the terminal raw: no control character but newline
    # (argparse's own usage errors quote values with repr, everything else goes through
    # harness.text.printable)
    for stream in (out.getvalue(), err.getvalue()):
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", stream), (argv, stream[-300:])
