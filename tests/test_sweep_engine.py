"""``python -m harness sweep run`` with the local engine (issue #29): a point's grid split into
units that cover it exactly, points computed into the result store and sealed once, sealed
points reused, the points split over two devices, and the run options refused without
``run``. The Ray engine on a real cluster: tests/test_sweep_ray.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.spec.jobs import GROUPS, jobs
from harness.spec.sweep import load_sweep
from tests.model_fixtures import write_tiny_depth_sweep


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sweep_engine")
    path = write_tiny_depth_sweep(d, "enginedepth", seeds=(42, 123))
    return path


def test_units_cover_the_grid_once_one_direction_and_seed_each(tiny_sweep: Path) -> None:
    from harness.sweep.units import point_units

    point = load_sweep(tiny_sweep).points[0]
    units = point_units(point)
    files = [f for u in units for f in u.files]
    assert sorted(files) == sorted(j.filename for j in jobs(point.protocol, GROUPS))
    assert len(files) == len(set(files))
    assert [u.key for u in units] == ["fwd-deterministic", "fwd-seed42", "fwd-seed123"]
    for u in units:  # a unit's conditions re-expand to exactly its files
        again = jobs(
            point.protocol,
            conditions=u.conditions,
            seeds=None if u.seed is None else (u.seed,),
            directions=(u.direction,),
        )
        assert tuple(j.filename for j in again) == u.files


def _lines(out: str) -> dict[str, str]:
    return {ln.split(":", 1)[0].strip(): ln for ln in out.splitlines() if ": " in ln}


def _computations(cache: Path) -> list[dict[str, object]]:
    path = cache / "computations.jsonl"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def test_local_run_seals_each_point_once_and_reuses_sealed_points(
    tiny_sweep: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "seq"))
    assert main(["sweep", "run", str(tiny_sweep)]) == 0
    lines = _lines(capsys.readouterr().out)
    assert "computed 15 result files" in lines["0.5"] and "computed 15" in lines["0.67"]
    assert len(_computations(tmp_path / "seq")) == 2
    assert main(["sweep", "run", str(tiny_sweep)]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines["0.5"].endswith("sealed, reused (nothing computed)")
    assert lines["0.67"].endswith("sealed, reused (nothing computed)")
    assert len(_computations(tmp_path / "seq")) == 2
    # split over two devices (two CPU processes here): the same entries, each sealed once
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "split"))
    assert main(["sweep", "run", str(tiny_sweep), "--device", "cpu,cpu"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert "computed 15 result files" in lines["0.5"] and "computed 15" in lines["0.67"]
    rows = _computations(tmp_path / "split")
    assert len(rows) == 2 and len({r["pid"] for r in rows}) == 2  # one process per device
    seq = sorted(p.parent.name for p in (tmp_path / "seq").glob("*/*/complete.json"))
    split = sorted(p.parent.name for p in (tmp_path / "split").glob("*/*/complete.json"))
    assert seq == split and len(seq) == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "sweep run: which sweep?"),
        (["picture", "{s}"], "unknown action 'picture'"),
        (["{s}", "--engine", "ray"], "--engine is an option of 'sweep run'"),
        (["run", "{s}", "--engine", "ray", "--device", "cuda:0,cuda:1"], "the ray engine takes"),
        (["run", "{s}", "--points", "nope"], "has no point 'nope'"),
    ],
)
def test_sweep_run_refuses_bad_arguments_in_one_line(
    tiny_sweep: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", *(a.replace("{s}", str(tiny_sweep)) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
