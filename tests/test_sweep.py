"""Sweeps (issue #29): the file format, its points and their hashes, bad axes refused before
any work, points as claim sources, and the picture drawn from cached results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.protocol import PROTOCOL_DIR, load_protocol
from harness.spec.sweep import SWEEP_DIR, is_sweep_file, load_sweep, split_point_token
from tests.helpers import FINAL, ROOT, STRICT, needs_artifact

MINI = PROTOCOL_DIR / "mini.toml"


def _sweep(tmp_path: Path, body: str, *, base: str = str(MINI), name: str = "s") -> Path:
    path = tmp_path / f"{name}.toml"
    head = f'[sweep]\nname = "{name}"\ndescription = "test"\nbase = "{base}"\n'
    path.write_text(head + body, encoding="utf-8")
    return path


DEPTH = '[[axis]]\nkey = "models.relative_depth"\nvalues = [0.33, 0.5, 0.67]\n'


def test_a_sweep_expands_into_one_protocol_per_point_with_its_own_hash(tmp_path: Path) -> None:
    seeds = '[[axis]]\nkey = "run.seeds"\nvalues = [[42], [42, 123]]\n'
    sweep = load_sweep(_sweep(tmp_path, DEPTH + seeds))
    assert [p.label for p in sweep.points] == [
        "relative_depth=0.33_seeds=42",
        "relative_depth=0.33_seeds=42-123",
        "relative_depth=0.5_seeds=42",
        "relative_depth=0.5_seeds=42-123",
        "relative_depth=0.67_seeds=42",
        "relative_depth=0.67_seeds=42-123",
    ]
    assert len({p.protocol.hash for p in sweep.points}) == 6
    p = sweep.point("relative_depth=0.5_seeds=42-123")
    assert p.name == "s/relative_depth=0.5_seeds=42-123"
    assert (p.protocol.models.relative_depth, p.protocol.run.seeds) == (0.5, (42, 123))
    # everything else is the base protocol's, value for value, paths resolved as its own
    base = load_protocol(MINI)
    assert p.protocol.decoding == base.decoding and p.protocol.translator == base.translator
    assert p.protocol.resolve_path(p.protocol.models.receiver) == base.resolve_path(
        base.models.receiver
    )
    # the point at the base's own value is the base protocol itself (same hash)
    assert sweep.point("relative_depth=0.67_seeds=42-123").protocol.hash != base.hash
    one = load_sweep(_sweep(tmp_path, DEPTH, name="one"))
    assert one.point("0.67").protocol.hash == base.hash


def test_a_point_shared_by_two_sweeps_is_one_protocol_and_one_cache_entry(tmp_path: Path) -> None:
    from harness.sweep import cache_name

    a = load_sweep(_sweep(tmp_path, DEPTH, name="a"))
    other = '[[axis]]\nkey = "models.relative_depth"\nvalues = [0.5, 0.83]\n'
    b = load_sweep(_sweep(tmp_path, other, name="b"))
    pa, pb = a.point("0.5"), b.point("0.5")
    assert pa.name != pb.name  # a/0.5 and b/0.5: two claim columns ...
    assert pa.protocol.hash == pb.protocol.hash  # ... one protocol
    assert cache_name(pa) == cache_name(pb) == "sweep"  # ... one cache folder
    assert cache_name(a.point("0.67")) == "mini"  # exactly mini's protocol: mini's own entry


def test_set_values_apply_to_every_point(tmp_path: Path) -> None:
    body = '[set]\n"run.extension_conditions" = []\n"run.seeds" = [7]\n' + DEPTH
    sweep = load_sweep(_sweep(tmp_path, body))
    assert all(p.protocol.run.extension_conditions == () for p in sweep.points)
    assert all(p.protocol.run.seeds == (7,) for p in sweep.points)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[axis]]\nkey = "models.depth"\nvalues = [0.5]\n', "unknown protocol key 'models.depth'"),
        ('[[axis]]\nkey = "depth"\nvalues = [0.5]\n', "unknown protocol key 'depth'"),
        ('[[axis]]\nkey = "name"\nvalues = ["x"]\n', "'name' cannot be swept"),
        (
            '[[axis]]\nkey = "models.relative_depth"\nvalues = [0.5, 1.5]\n',
            r"point 1\.5: models\.relative_depth = 1\.5: must be \(0, 1\)",
        ),
        (
            '[[axis]]\nkey = "run.conditions"\nvalues = [["no_inject", "telepathy"]]\n',
            "point no_inject-telepathy: run.conditions has 'telepathy': must be one of",
        ),
        (
            '[[axis]]\nkey = "models.relative_depth"\nvalues = ["half"]\n',
            "point half: models.relative_depth must be float, got 'half'",
        ),
        (
            '[[axis]]\nkey = "run.seeds"\nvalues = [[42, 42]]\n',
            r"seeds = \[42, 42\]: must be unique",
        ),
        ('[set]\n"stats.confidence" = 2.0\n' + DEPTH, r"stats\.confidence = 2\.0: must be"),
        ('[set]\n"stats.level" = 0.9\n' + DEPTH, r"\[set\]: unknown protocol key 'stats.level'"),
        ("", r"no \[\[axis\]\] table"),
        (
            '[[axis]]\nkey = "models.relative_depth"\nvalues = [0.5, 0.5]\n',
            "label '0.5' names two values",
        ),
        (
            '[[axis]]\nkey = "models.relative_depth"\nvalues = [0.5]\nlabels = ["a/b"]\n',
            "label 'a/b' is not a plain name",
        ),
        (
            '[[axis]]\nkey = "models.relative_depth"\nvalues = [0.5]\nx = ["five"]\n',
            "x must be a list of 1 finite numbers",
        ),
        (DEPTH + DEPTH, "axis 'models.relative_depth' is given twice"),
        ('[set]\n"models.relative_depth" = 0.5\n' + DEPTH, "is both set and swept"),
        ('[[axis]]\nkey = "models.relative_depth"\nvalues = 0.5\n', "values must be a non-empty"),
    ],
    ids=lambda x: x[:40] if isinstance(x, str) else x,
)
def test_a_bad_sweep_is_refused_before_any_work_naming_the_point_and_the_rule(
    tmp_path: Path, body: str, message: str
) -> None:
    with pytest.raises(HarnessError, match=message) as err:
        load_sweep(_sweep(tmp_path, body))
    assert "\n" not in str(err.value)


def test_a_sweep_header_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "n.toml"
    bad.write_text(f'[sweep]\nname = "a/b"\nbase = "{MINI}"\n' + DEPTH, encoding="utf-8")
    with pytest.raises(HarnessError, match=r"sweep\.name = 'a/b' is not a plain name"):
        load_sweep(bad)
    bad.write_text('[sweep]\nname = "n"\nbase = "nonesuch"\n' + DEPTH, encoding="utf-8")
    with pytest.raises(HarnessError, match="protocol not found: nonesuch"):
        load_sweep(bad)
    bad.write_text('[sweep]\nname = "n"\nbase = "mini"\n[axes]\n' + DEPTH, encoding="utf-8")
    with pytest.raises(HarnessError, match="unknown key 'axes'"):
        load_sweep(bad)
    bad.write_text("[sweep\n", encoding="utf-8")
    with pytest.raises(HarnessError, match="malformed sweep"):
        load_sweep(bad)
    with pytest.raises(HarnessError, match="not found"):
        load_sweep(tmp_path / "absent.toml")


def test_point_tokens_round_trip_and_only_sweep_files_are_sweeps(tmp_path: Path) -> None:
    from harness.spec.sweep import point_token

    path = _sweep(tmp_path, DEPTH)
    assert is_sweep_file(path) and not is_sweep_file(MINI) and not is_sweep_file(tmp_path / "x")
    token = point_token(path, "0.5")
    assert split_point_token(token) == (path.resolve(), "0.5")
    assert split_point_token(str(MINI)) is None and split_point_token("mini") is None


def test_sweep_tokens_expand_into_named_point_sources(tmp_path: Path) -> None:
    from harness.sweep import expand_tokens, spec_of

    path = _sweep(tmp_path, DEPTH)
    tokens = expand_tokens(["paper", str(path)])
    assert tokens[0] == "paper" and len(tokens) == 4
    assert [spec_of(t).name for t in tokens] == ["paper", "s/0.33", "s/0.5", "s/0.67"]
    with pytest.raises(HarnessError, match="is a sweep file, not one source"):
        spec_of(str(path))
    with pytest.raises(HarnessError, match="has no point 'nope'"):
        spec_of(f"{path}#nope")


def test_a_point_without_weights_is_skipped_with_the_reason(tmp_path: Path) -> None:
    from harness.sources import SourceUnavailable
    from harness.sweep import expand_tokens, load_any

    body = '[[axis]]\nkey = "models.receiver"\nvalues = ["/nonexistent/receiver"]\n'
    (token,) = expand_tokens([str(_sweep(tmp_path, body))])
    with pytest.raises(SourceUnavailable, match="weights not found: /nonexistent/receiver"):
        load_any(token)


def _pytest(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_claims_collect_once_per_point_and_a_bad_axis_stops_the_run(tmp_path: Path) -> None:
    path = _sweep(tmp_path, DEPTH)
    status = tmp_path / "status.json"
    out = _pytest(
        "claims", "--source", str(path), "--collect-only", "-q", "--claims-status", str(status)
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ids = {line.partition("[")[2].rstrip("]") for line in out.stdout.splitlines() if "[" in line}
    assert {"s/0.33", "s/0.5", "s/0.67"} <= ids
    bad = _sweep(tmp_path, DEPTH.replace("0.5", "1.5"), name="bad")
    out = _pytest("claims", "--source", f"paper,{bad}", "--collect-only", "-q")
    assert out.returncode != 0
    err = [x for x in (out.stdout + out.stderr).splitlines() if "ERROR" in x]
    assert err == [
        "ERROR: --source: sweep bad point 1.5: models.relative_depth = 1.5: must be (0, 1) "
        "-- correct the axis value in bad.toml"
    ], out.stdout[-2000:] + out.stderr[-2000:]


def test_the_shipped_sweeps_load() -> None:
    files = sorted(SWEEP_DIR.glob("*.toml"))
    assert files, "protocols/sweeps/ ships at least the ladder"
    for f in files:
        sweep = load_sweep(f)
        assert sweep.points and is_sweep_file(f)


# -- the picture ---------------------------------------------------------------------------


def _seal(point, dirs: list[Path]) -> None:
    """A sealed cache entry for ``point`` holding copies of ``dirs``' result files."""
    from harness.run.inputs import source_fingerprint
    from harness.sources import cache_root
    from harness.sweep import cache_name

    root = (
        cache_root()
        / cache_name(point)
        / f"{point.protocol.hash}-{source_fingerprint(point.protocol)}"
    )
    (root / "results").mkdir(parents=True)
    for d in dirs:
        for f in d.glob("*.json"):
            shutil.copy(f, root / "results" / f.name)
    (root / "complete.json").write_text("{}", encoding="utf-8")


@needs_artifact
def test_the_picture_draws_the_matrix_deltas_and_figures_from_cached_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.sweep.picture import headline, point_data, render_matrix, write_picture

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    body = (
        '[[axis]]\nkey = "stats.tost_low"\nvalues = [-0.02, -0.03]\ntitle = "TOST low"\n'
        '[[axis]]\nkey = "stats.tost_high"\nvalues = [0.02, 0.03, 0.04]\n'
    )
    sweep = load_sweep(_sweep(tmp_path, body, base="paper", name="pp"))
    assert len(sweep.points) == 6
    for p in sweep.points[:5]:  # the last point is left uncomputed
        _seal(p, [FINAL, STRICT])
    labels = [p.name for p in sweep.points]
    claim = "test_replacement_is_destructive_versus_no_injection"
    status = {
        "latest_run": "t",
        "catalog": {claim: {"module": "test_04_failure_analysis", "section": "4", "line": 1}},
        "claims": {
            "test_replacement_is_destructive_versus_no_injection": {
                labels[0]: {
                    "outcome": "passed",
                    "measured": "replace vs no_inject: -8.59 pp [-10.27, -6.90]",
                    "run": "t",
                },
                labels[1]: {"outcome": "xfail", "measured": "replace: -1.00 pp", "run": "t"},
                labels[2]: {"outcome": "failed", "measured": "", "detail": "x", "run": "t"},
                labels[3]: {"outcome": "skipped", "detail": "no data", "run": "t"},
            }
        },
    }
    status_path = tmp_path / "status.json"
    status_path.write_text(json.dumps(status), encoding="utf-8")
    text = render_matrix(sweep, status_path)
    row = next(
        x for x in text.splitlines() if "replacement is destructive versus no injection" in x
    )
    cells = [c.strip() for c in row[60:].split("  ") if c.strip()]
    assert cells == ["PASS -8.59pp", "finding -1.00pp", "FAIL", "skip", "-", "-"], row
    md = render_matrix(sweep, status_path, markdown=True)
    assert "| PASS -8.59pp | finding -1.00pp | FAIL | skip | - | - |" in md
    data = point_data(sweep)
    assert data[-1].missing and not data[0].missing
    # the paper's own numbers, recomputed from the copied result files
    assert round(100 * data[0].accuracy["no_inject"], 2) == 8.84
    d, lo, hi = data[0].delta["replace"]
    assert (round(100 * d, 2), round(100 * lo, 2), round(100 * hi, 2)) == (-8.59, -10.27, -6.9)
    written = write_picture(sweep, status_path, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == [
        "axis_tost_high.png",
        "axis_tost_low.png",
        "deltas.json",
        "heatmap_tost_low_x_tost_high.png",
        "matrix.md",
        "matrix.txt",
    ]
    for p in written:
        assert p.stat().st_size > 0
    numbers = json.loads((tmp_path / "out" / "deltas.json").read_text(encoding="utf-8"))
    assert numbers["points"][0]["delta_vs_no_inject"]["replace"][0] == pytest.approx(d)
    assert headline("PASS 33 files; ['gpt_neox.layers.8 -> layers.16']") == "33"
    assert headline("additive 9.26%, best other 4.88%") == "9.26%"
    assert headline("relative depth [0.67]; blocks") == "0.67"


def test_the_sweep_command_prints_the_picture_and_refuses_a_bad_sweep_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    path = _sweep(tmp_path, DEPTH)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "sweep s: 3 points" in printed
    assert "0.33: not computed yet" in printed  # an empty cache: every point says so
    assert (tmp_path / "out" / "matrix.md").is_file()
    bad = _sweep(tmp_path, DEPTH.replace("0.5", "1.5"), name="bad")
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "point 1.5: models.relative_depth = 1.5: must be (0, 1)" in err[0]


def test_the_layer_pair_sweep_is_a_k_by_j_grid_checked_against_the_models_blocks(tmp_path):
    """``protocols/sweeps/layers.toml``: 3 x 3 explicit (k, j) points, each its own protocol;
    a block past the receiver's last (8 blocks: 0..7) is refused when the sweep loads,
    naming the point and the model, before any work."""
    from harness.errors import HarnessError
    from harness.protocol import PROTOCOL_DIR
    from harness.spec.sweep import load_sweep

    shipped = PROTOCOL_DIR / "sweeps" / "layers.toml"
    s = load_sweep(shipped)
    assert len(s.points) == 9 and len({p.protocol.hash for p in s.points}) == 9
    ks = sorted({p.protocol.models.sender_layer for p in s.points})
    js = sorted({p.protocol.models.receiver_layer for p in s.points})
    assert (ks, js) == ([1, 3, 4], [2, 5, 7])
    bad = tmp_path / "bad.toml"
    text = shipped.read_text(encoding="utf-8").replace("values = [2, 5, 7]", "values = [2, 5, 8]")
    text = text.replace('"j7"', '"j8"')
    bad.write_text(text.replace('"../mini.toml"', f'"{PROTOCOL_DIR / "mini.toml"}"'))
    with pytest.raises(
        HarnessError, match=r"point .*j8: models\.receiver_layer = 8: .* has 8 blocks"
    ):
        load_sweep(bad)
