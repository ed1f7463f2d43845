from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.analysis.results import ResultSet, load_result_file, result_filename, write_result_file
from harness.conditions import CONDITIONS
from harness.errors import HarnessError
from harness.protocol import load_protocol
from tests.helpers import FINAL, STRICT, needs_artifact


@needs_artifact
def test_canonical_names_round_trip_every_artifact_file() -> None:
    proto = load_protocol("paper")
    for path in [*sorted(FINAL.glob("*.json")), *sorted(STRICT.glob("*.json"))]:
        f = load_result_file(path)
        alpha = proto.alpha_for(CONDITIONS[f.condition].alpha)
        assert result_filename(f.condition, f.direction, f.seed, alpha) == path.name


@needs_artifact
def test_result_set_indexes_runs_by_condition_direction_and_seed() -> None:
    rs = ResultSet.from_dirs(FINAL, STRICT)
    assert len(rs) == 33 and not rs.duplicates
    assert [f.seed for f in rs.runs("additive")] == [42, 123, 456]
    assert [f.seed for f in rs.runs("no_inject")] == [None]
    assert rs.directions() == ["fwd", "rev"]
    assert rs.runs("shuffled_translation_strict_matched")[0].n == 383


@needs_artifact
def test_unknown_extra_fields_are_kept(tmp_path: Path) -> None:
    data = json.loads((FINAL / "h1_no_inject_fwd_deterministic.json").read_text())
    data["provenance"] = {"git": "abc"}
    data["per_sample"][0]["extra_field"] = 1
    p = tmp_path / "x.json"
    p.write_text(json.dumps(data))
    f = load_result_file(p)
    assert f.raw["provenance"] == {"git": "abc"} and f.per_sample[0]["extra_field"] == 1


@needs_artifact
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("diagnostics"), "missing required field 'diagnostics'"),
        (
            lambda d: d["config"].pop("clean_eval_hash"),
            "missing required field 'config.clean_eval_hash'",
        ),
        (
            lambda d: d["per_sample"][3].pop("prediction"),
            "per_sample[3] missing or non-string field 'prediction'",
        ),
        (lambda d: d.update(seed="42"), "field 'seed' must be an integer or null"),
    ],
)
def test_missing_required_field_is_an_error_naming_file_and_field(
    tmp_path: Path, mutate, message: str
) -> None:
    data = json.loads((FINAL / "h1_additive_fwd_seed42.json").read_text())
    mutate(data)
    p = tmp_path / "h1_additive_fwd_seed42.json"
    p.write_text(json.dumps(data))
    with pytest.raises(HarnessError) as err:
        load_result_file(p)
    assert str(p) in str(err.value) and message in str(err.value)


def test_truncated_json_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "h1_no_inject_fwd_deterministic.json"
    p.write_text('{"schema_version": "h1_final_runner.v1", "per_sample": [')
    with pytest.raises(HarnessError, match="truncated or corrupt JSON"):
        load_result_file(p)


@needs_artifact
def test_write_result_file_is_atomic_and_uses_the_canonical_name(tmp_path: Path) -> None:
    src = FINAL / "h1_best_alpha_fwd_seed42_alpha0p3.json"
    data = json.loads(src.read_text())
    out = write_result_file(tmp_path, data)
    assert out.name == src.name
    assert json.loads(out.read_text()) == data
    assert [p.name for p in tmp_path.iterdir()] == [src.name]  # no temp file left behind
    with pytest.raises(HarnessError, match="missing required field"):
        write_result_file(tmp_path, {k: v for k, v in data.items() if k != "per_sample"})


@needs_artifact
def test_duplicate_runs_across_directories_are_recorded(tmp_path: Path) -> None:
    shutil.copy(FINAL / "h1_no_inject_fwd_deterministic.json", tmp_path)
    rs = ResultSet.from_dirs(FINAL, tmp_path)
    assert len(rs.duplicates) == 1 and rs.duplicates[0][0].key == ("no_inject", "fwd", None)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="result directory not found"):
        ResultSet.from_dirs(tmp_path / "nope")
