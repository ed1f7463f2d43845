from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from tests.helpers import FINAL, STRICT, needs_artifact

pytestmark = needs_artifact


def _run(tmp_path: Path, *argv: str) -> dict:
    out = tmp_path / "out.json"
    assert main([*argv, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_summarize_json_keys(tmp_path: Path) -> None:
    rows = _run(tmp_path, "summarize", str(FINAL), str(STRICT))["rows"]
    keys = {"condition", "direction", "runs", "n"} | {
        f"{m}_{s}"
        for m in (
            "exact_match",
            "normalized_exact_match",
            "word_boundary_contains",
            "legacy_contains",
        )
        for s in ("mean", "std")
    }
    assert keys <= set(rows[0]) and len(rows) == 15


def test_compare_json_keys(tmp_path: Path) -> None:
    rows = _run(tmp_path, "compare", str(FINAL))["rows"]
    keys = {
        "condition",
        "baseline",
        "metric",
        "direction",
        "runs",
        "n_pairs",
        "delta",
        "ci_low",
        "ci_high",
        "gained",
        "lost",
        "mcnemar_p",
    }
    assert keys <= set(rows[0])
    assert {r["baseline"] for r in rows} == {"no_inject", "nl_relay"}


def test_compare_takes_tost_bounds(tmp_path: Path) -> None:
    wide = _run(tmp_path, "compare", str(FINAL), "--tost-low", "-0.05", "--tost-high", "0.05")[
        "rows"
    ]
    narrow = _run(tmp_path, "compare", str(FINAL), "--tost-low", "-0.001", "--tost-high", "0.001")[
        "rows"
    ]

    def pick(rows):
        return next(r for r in rows if (r["condition"], r["baseline"]) == ("additive", "no_inject"))

    assert pick(wide)["tost_p"] < 0.05 < pick(narrow)["tost_p"]


def test_validate_json_keys(tmp_path: Path) -> None:
    rep = _run(tmp_path, "validate", str(FINAL), str(STRICT), "--include-strict-matched")
    assert (rep["expected_files"], rep["present_files"], rep["blocking_passed"]) == (24, 24, True)
    assert {"name", "blocking", "passed", "detail"} <= set(rep["checks"][0])


def test_audit_json_keys(tmp_path: Path) -> None:
    rep = _run(tmp_path, "audit", str(FINAL))
    assert rep["label_counts"] == {
        "verbose_correct": 5,
        "substring_noise": 31,
        "accidental_mention": 29,
    }
    assert len(rep["rows"]) == 65


def test_figures_writes_five_pngs(tmp_path: Path) -> None:
    assert main(["figures", str(FINAL), str(STRICT), "--out", str(tmp_path)]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(pngs) == 5 and all((tmp_path / p).stat().st_size > 10_000 for p in pngs)
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_default_directories_come_from_the_artifact(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summarize"]) == 0
    assert "shuffled_translation_strict_matched" in capsys.readouterr().out


def test_bad_directory_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["summarize", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: result directory not found") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "--metric", "f1"], "unknown --metric 'f1'"),
        (["compare", "--tost-low", "0.02", "--tost-high", "-0.02"], "low < high"),
        (["compare", "--tost-low", "nan"], "must be a finite number"),
    ],
)
def test_bad_compare_options_are_one_line_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: ")


def _grid_copy(tmp_path):
    import shutil

    from tests.helpers import FINAL

    d = tmp_path / "grid"
    shutil.copytree(FINAL, d)
    return d


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("duplicate", "appear twice"),
        ("empty", "has no rows"),
        ("repeat", "repeats 1 sample id"),
        ("short", "pooled pairs would silently shrink"),
    ],
)
def test_summarize_and_compare_refuse_inputs_that_would_make_a_number_wrong(
    change: str, message: str, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    d = _grid_copy(tmp_path)
    target = d / "h1_replace_fwd_seed42.json"
    data = json.loads(target.read_text())
    if change == "duplicate":
        data["per_sample"] = data["per_sample"]
        (d / "copy_of_replace.json").write_text(json.dumps(data))
    elif change == "empty":
        data["per_sample"] = []
        target.write_text(json.dumps(data))
    elif change == "repeat":
        data["per_sample"][1] = data["per_sample"][0]
        target.write_text(json.dumps(data))
    else:
        data["per_sample"] = data["per_sample"][:-3]
        target.write_text(json.dumps(data))
    for cmd in ("summarize", "compare"):
        assert main([cmd, str(d)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_output_paths_are_checked_before_any_work(tmp_path, capsys) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    assert main(["summarize", "--json", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--json {folder} is a folder" in err and err.count("\n") == 1
    assert not list(tmp_path.glob(".*.tmp")) and not list(folder.iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["figures", "--out", str(blocker / "figs")]) == 2
    assert "--out" in capsys.readouterr().err


def test_validate_refuses_a_missing_eval_file(tmp_path, capsys) -> None:
    assert main(["validate", "--eval", str(tmp_path / "nope.jsonl")]) == 2
    assert "--eval" in capsys.readouterr().err


def test_huge_or_repeated_seeds_are_one_line_errors(tmp_path, capsys) -> None:
    for seeds in ("99999999999999", "42,42"):
        code = main(["run", "--protocol", "mini", "--out", str(tmp_path), "--seeds", seeds])
        err = capsys.readouterr().err
        assert code == 2 and "--seeds must be unique integers" in err and err.count("\n") == 1


def test_a_prediction_with_a_lone_surrogate_prints_and_round_trips(tmp_path, capsys) -> None:
    import json
    import shutil

    d = tmp_path / "grid"
    shutil.copytree(FINAL, d)
    target = d / "h1_additive_fwd_seed42.json"
    data = json.loads(target.read_text())
    row = data["per_sample"][0]
    row["prediction"] = f"{row['gold']} x\ud800 {row['gold']}s"
    target.write_text(json.dumps(data))
    out = tmp_path / "audit.json"
    assert main(["audit", str(d), "--json", str(out)]) == 0
    capsys.readouterr()
    rows = json.loads(out.read_text(encoding="utf-8"))
    rows = rows if isinstance(rows, list) else rows["rows"]
    assert any("\ud800" in r["prediction"] for r in rows)


def test_the_regime_figure_puts_the_papers_conditions_above_those_beyond_it(
    tmp_path, monkeypatch
) -> None:
    """fig8: one bar per (condition, regime) a regime ran, the paper's conditions in the top
    panel and the extension group's below, in registry order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.analysis import figures
    from harness.conditions import EXTENSION_CONDITIONS

    acc = {
        "shared": {"no_inject": 0.7, "nl_relay": 0.1, "rl_map_replace": 0.5},
        "withheld": {"rl_map_replace": 0.2, "no_inject": 0.06},
    }
    drawn = []
    real = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig) or real(fig, path))
    path = figures.fig_regimes(acc, tmp_path / "fig8.png")
    assert path.stat().st_size > 0
    top, bottom = drawn[0].axes
    assert [t.get_text() for t in top.get_xticklabels()] == [
        figures._label("no_inject"),
        figures._label("nl_relay"),
    ]
    assert [t.get_text() for t in bottom.get_xticklabels()] == [figures._label("rl_map_replace")]
    assert "rl_map_replace" in EXTENSION_CONDITIONS
    heights = sorted(round(p.get_height(), 6) for p in top.patches)
    assert heights == [6.0, 10.0, 70.0]  # withheld ran no relay: no bar, not a zero bar
    assert sorted(round(p.get_height(), 6) for p in bottom.patches) == [20.0, 50.0]
    plt.close("all")
