"""The published tables reader, and the sampling-error rule a rerun of the paper is held to."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
import shutil
from pathlib import Path

import pytest

from harness.analysis import published
from harness.analysis.published import (
    PUBLISHED_TABLES,
    Gap,
    bonferroni_z,
    bootstrap_bound_tolerance,
    published_tables,
    rerun_gap,
)
from harness.analysis.results import ResultFile, load_result_file
from harness.errors import HarnessError
from harness.protocol import load_protocol
from harness.sources import Source
from tests.helpers import FINAL, STRICT, needs_artifact

SHARED_TABLES = Path("/work/shared/paper/tables")


def test_every_vendored_table_is_verified_and_read() -> None:
    t = published_tables()
    assert len(PUBLISHED_TABLES) == 8
    add = t.summary[("additive", "fwd")]
    assert (add.runs, add.n) == (3, 396)
    assert round(add.means["word_boundary_contains"], 4) == 0.0926
    assert round(add.stds["word_boundary_contains"], 4) == 0.0073
    assert t.summary[("shuffled_translation_strict_matched", "fwd")].n == 383
    row = t.comparisons[("additive", "no_inject", "word_boundary_contains")]
    assert (round(row.delta, 4), round(row.ci_low, 4), round(row.ci_high, 4)) == (
        0.0042,
        -0.0042,
        0.0126,
    )
    strict = t.comparisons[
        ("shuffled_translation_strict_matched", "no_inject", "word_boundary_contains")
    ]
    assert strict.n_pairs == 1149


@pytest.mark.skipif(not SHARED_TABLES.is_dir(), reason="no reference copy of the tables here")
def test_the_vendored_tables_decompress_to_the_reference_copy_byte_for_byte() -> None:
    for rel in PUBLISHED_TABLES:
        got = gzip.decompress((published.TABLES / f"{rel}.gz").read_bytes())
        assert got == (SHARED_TABLES / rel).read_bytes(), rel


@pytest.fixture
def tables_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "tables"
    shutil.copytree(published.TABLES, copy)
    return copy


def test_a_tampered_table_is_a_one_line_error_naming_it(tables_copy: Path) -> None:
    target = tables_copy / "final/final_summary_by_condition.csv.gz"
    data = gzip.decompress(target.read_bytes()).replace(b"0.09259259", b"0.09359259", 1)
    target.write_bytes(gzip.compress(data))
    with pytest.raises(HarnessError, match="tampered or damaged") as err:
        published_tables(tables_copy)
    assert "final_summary_by_condition.csv" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_table_is_a_one_line_error(tables_copy: Path) -> None:
    (tables_copy / "final_strict_controls/final_summary.md.gz").unlink()
    with pytest.raises(HarnessError, match="is missing"):
        published_tables(tables_copy)


def test_bonferroni_z_grows_with_the_number_of_tests() -> None:
    assert bonferroni_z(1) == pytest.approx(1.959964, abs=1e-6)
    assert bonferroni_z(55) > bonferroni_z(18) > bonferroni_z(2) > bonferroni_z(1)


def test_the_bootstrap_tolerance_is_one_grid_step_plus_monte_carlo_error() -> None:
    tol = bootstrap_bound_tolerance(396, 0.29)
    assert 1 / 396 < tol < 1 / 396 + 0.002
    assert bootstrap_bound_tolerance(1188, 0.0) == pytest.approx(1 / 1188 + 5e-5)


def test_a_gap_is_within_z_standard_errors_plus_the_rounding() -> None:
    gap = Gap(diff=0.0, se=0.002, n=396)
    assert gap.within(0.0926 + 0.0039, 0.0926, 1.96)
    assert not gap.within(0.0926 + 0.0041, 0.0926, 1.96)
    assert Gap(0.0, 0.0, 396).within(0.09262, 0.0926, 1.96)


# -- a synthetic rerun made from the artifact --------------------------------------------------
def _load(name: str) -> ResultFile:
    folder = STRICT if "strict_matched" in name else FINAL
    assert folder is not None
    return load_result_file(folder / name)


def _with_rows(f: ResultFile, rows: list[dict]) -> ResultFile:
    return dataclasses.replace(f, per_sample=tuple(rows), raw={**f.raw, "per_sample": rows})


def _reseeded(runs: list[ResultFile], rng: random.Random) -> list[ResultFile]:
    """A genuine rerun of a seed-dependent condition: each seed's row of each sample is the
    row of a seed drawn at random (with replacement) from the three, so the rerun's rows come
    from the same per-sample distribution and differ from the artifact's only by seeds."""
    by_seed = [{r["sample_id"]: r for r in f.per_sample} for f in runs]
    out = []
    for f in runs:
        rows = [dict(rng.choice(by_seed)[r["sample_id"]]) for r in f.per_sample]
        out.append(_with_rows(f, rows))
    return out


def _answer_more(f: ResultFile, k: int) -> ResultFile:
    """``k`` wrong rows answer correctly (a shifted number)."""
    rows, n = [], 0
    for r in f.per_sample:
        r = dict(r)
        if n < k and r["gold"].lower() not in r["prediction"].lower():
            r["prediction"] = f"The answer is {r['gold']}."
            n += 1
        rows.append(r)
    return _with_rows(f, rows)


ADDITIVE = [f"h1_additive_fwd_seed{s}.json" for s in (42, 123, 456)]
PUBLISHED_ADDITIVE = 0.09259259259259259


def _mean(files: list[ResultFile]) -> float:
    from harness.analysis.tables import run_scores

    return sum(sum(run_scores(f).values()) / f.n for f in files) / len(files)


@needs_artifact
def test_genuine_reruns_lie_within_sampling_error_of_the_published_mean() -> None:
    ref = [_load(n) for n in ADDITIVE]
    z = bonferroni_z(1)
    rng = random.Random(0)
    inside = 0
    for _ in range(40):
        rerun = _reseeded(ref, rng)
        gap = rerun_gap(rerun, ref)
        assert gap.n == 396 and gap.diff == pytest.approx(_mean(rerun) - _mean(ref))
        inside += gap.within(_mean(rerun), PUBLISHED_ADDITIVE, z)
    assert inside >= 36, inside  # a 95% rule: about 38 of 40 genuine reruns pass


@needs_artifact
def test_a_rerun_shifted_by_a_point_is_outside_sampling_error() -> None:
    ref = [_load(n) for n in ADDITIVE]
    rerun = _reseeded(ref, random.Random(1))
    rerun[0] = _answer_more(rerun[0], 36)  # +1 pp on the pooled mean
    gap = rerun_gap(rerun, ref)
    assert not gap.within(_mean(rerun), PUBLISHED_ADDITIVE, bonferroni_z(1)), gap


@needs_artifact
def test_the_gap_of_a_delta_pairs_each_run_with_its_baseline() -> None:
    ref = [_load(n) for n in ADDITIVE]
    base = [_load("h1_no_inject_fwd_deterministic.json")]
    same = rerun_gap(ref, ref, rerun_baseline=base, reference_baseline=base)
    assert (same.diff, same.se, same.n) == (0.0, 0.0, 396)
    shifted = rerun_gap(
        ref, ref, rerun_baseline=[_answer_more(base[0], 4)], reference_baseline=base
    )
    assert shifted.diff == pytest.approx(-4 / 396) and shifted.se > 0


@needs_artifact
def test_a_rerun_with_other_seeds_or_ids_is_not_a_rerun() -> None:
    ref = [_load(n) for n in ADDITIVE]
    with pytest.raises(HarnessError, match="seeds"):
        rerun_gap(ref[:2], ref)
    cut = [_with_rows(f, list(f.per_sample[:-1])) for f in ref]
    with pytest.raises(HarnessError, match="sample ids"):
        rerun_gap(cut, ref)


# -- the stated-number claims on a rerun source (claims/_stated.py) ----------------------------
def _rerun_source(tmp_path: Path, files: list[ResultFile]) -> Source:
    out = tmp_path / "rerun"
    out.mkdir()
    for f in files:
        (out / f.name).write_text(json.dumps(f.raw), encoding="utf-8")
    proto = load_protocol("paper")
    assert FINAL is not None
    return Source("rerun", proto, [out], proto.eval_path(FINAL.parent.parent))


def _artifact_files() -> list[ResultFile]:
    assert FINAL is not None and STRICT is not None
    return [load_result_file(p) for d in (FINAL, STRICT) for p in sorted(d.glob("*.json"))]


def _claims(source: Source) -> dict[str, str | None]:
    """The stated-number claims' verdicts on ``source``: None passed, else the message."""
    from claims import test_03_main_results as t03
    from claims import test_05_diagnostic_controls as t05
    from claims import test_07b_pairwise_comparisons as t07b

    out = {}
    for fn in (
        t03.test_table_1_means_and_standard_deviations_are_the_published_ones,
        t03.test_additive_word_boundary_accuracy_is_0_0926,
        t03.test_additive_versus_no_injection_is_plus_0_0042_with_ci_minus_0_0042_to_plus_0_0126,
        t03.test_replacement_delta_is_minus_0_0859_versus_no_injection_and_minus_0_0808_versus_relay,
        t05.test_self_injection_and_no_injection_word_boundary_accuracy_is_0_0884,
        t05.test_deterministic_conditions_reproduce_the_artifact_predictions_row_by_row,
        t07b.test_table_3_paired_deltas_and_cis_are_the_published_ones,
    ):
        try:
            fn(source, lambda text, **numbers: text)
            out[fn.__name__] = None
        except AssertionError as exc:
            out[fn.__name__] = str(exc)
    return out


def _rerun_files(rng: random.Random) -> list[ResultFile]:
    files = _artifact_files()
    out = []
    for key in sorted({(f.condition, f.direction) for f in files}):
        runs = [f for f in files if (f.condition, f.direction) == key]
        out += runs if runs[0].deterministic else _reseeded(runs, rng)
    return out


@needs_artifact
@pytest.mark.slow
def test_a_synthetic_rerun_of_the_paper_passes_its_stated_number_claims(tmp_path: Path) -> None:
    verdicts = _claims(_rerun_source(tmp_path, _rerun_files(random.Random(7))))
    assert all(v is None for v in verdicts.values()), verdicts


@needs_artifact
@pytest.mark.slow
def test_a_rerun_with_shifted_numbers_fails_exactly_the_claims_of_those_numbers(
    tmp_path: Path,
) -> None:
    files = _rerun_files(random.Random(7))
    i = next(i for i, f in enumerate(files) if f.name == "h1_additive_fwd_seed42.json")
    files[i] = _answer_more(files[i], 36)  # additive +1 pp pooled
    j = next(i for i, f in enumerate(files) if f.name == "h1_nl_relay_fwd_deterministic.json")
    files[j] = _answer_more(files[j], 1)  # one relay row: a deterministic condition drifted
    verdicts = _claims(_rerun_source(tmp_path, files))
    failed = {k for k, v in verdicts.items() if v is not None}
    assert failed == {
        "test_table_1_means_and_standard_deviations_are_the_published_ones",
        "test_additive_word_boundary_accuracy_is_0_0926",
        "test_additive_versus_no_injection_is_plus_0_0042_with_ci_minus_0_0042_to_plus_0_0126",
        "test_deterministic_conditions_reproduce_the_artifact_predictions_row_by_row",
        "test_table_3_paired_deltas_and_cis_are_the_published_ones",
    }, verdicts
