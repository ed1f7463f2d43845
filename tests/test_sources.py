"""The on-disk result cache: computed once, shared across processes, self-healing."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.protocol import load_protocol
from harness.sources import cached_results, computation_count
from tests.helpers import EVAL, FINAL, ROOT, STRICT, needs_artifact

pytestmark = needs_artifact


def _copy_artifact(results: Path, delay: float = 0.0) -> None:
    """A stand-in for the runner: 'computes' the grid by copying the artifact's files."""
    time.sleep(delay)
    results.mkdir(parents=True, exist_ok=True)
    for d in (FINAL, STRICT):
        for p in d.glob("*.json"):
            if not (results / p.name).exists():
                shutil.copy(p, results / p.name)
    marker = results.parent / "computed.log"
    with open(marker, "a") as fh:
        fh.write("x\n")


def _worker(cache: str, delay: float) -> str:
    import os

    os.environ["HARNESS_CACHE"] = cache
    return str(
        cached_results(
            "test", load_protocol("paper"), lambda r: _copy_artifact(r, delay), eval_path=EVAL
        )
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_results_are_computed_once_then_reused(cache: Path) -> None:
    proto = load_protocol("paper")
    calls = []
    first = cached_results(
        "test", proto, lambda r: (calls.append(1), _copy_artifact(r)), eval_path=EVAL
    )
    again = cached_results("test", proto, lambda r: calls.append(1), eval_path=EVAL)
    assert first == again and len(calls) == 1 and computation_count("test") == 1
    assert first.parent.parent == cache / "test" and first.parent.name.startswith(proto.hash)


def test_concurrent_processes_compute_the_entry_exactly_once(cache: Path) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Pool(3) as pool:
        paths = pool.starmap(_worker, [(str(cache), 0.5)] * 3)
    assert len(set(paths)) == 1
    assert (Path(paths[0]).parent / "computed.log").read_text() == "x\n"
    assert computation_count("test") == 1


def test_a_corrupt_entry_is_detected_and_recomputed(cache: Path) -> None:
    proto = load_protocol("paper")
    results = cached_results("test", proto, _copy_artifact, eval_path=EVAL)
    victim = results / "h1_replace_fwd_seed42.json"
    victim.write_text(victim.read_text()[:1000])  # truncated, as by a crash or a bad disk
    redone = []
    cached_results("test", proto, lambda r: (redone.append(1), _copy_artifact(r)), eval_path=EVAL)
    assert redone == [1] and computation_count("test") == 2
    assert victim.read_bytes() == (FINAL / victim.name).read_bytes()


def test_an_invalid_computation_is_refused_and_not_marked_complete(cache: Path) -> None:
    proto = load_protocol("paper")

    def partial(results: Path) -> None:
        _copy_artifact(results)
        (results / "h1_no_inject_fwd_deterministic.json").unlink()

    with pytest.raises(HarnessError, match="fail validation: expected_files_present"):
        cached_results("test", proto, partial, eval_path=EVAL)
    assert not list((cache / "test").glob("*/complete.json"))


def _halfdepth(tmp_path: Path, depth: float = 0.5, models: str | None = None) -> Path:
    """The mini protocol at another relative depth, as a TOML outside the repository."""
    from harness.protocol import PROTOCOL_DIR

    text = (PROTOCOL_DIR / "mini.toml").read_text(encoding="utf-8")
    mini = (PROTOCOL_DIR.parent / "harness" / "mini").resolve()
    text = text.replace('name = "mini"', 'name = "halfdepth"')
    text = text.replace("relative_depth = 0.67", f"relative_depth = {depth}")
    text = text.replace("../harness/mini", str(mini))
    if models:
        text = text.replace(f"{mini}/models", models)
    path = tmp_path / "elsewhere" / "halfdepth.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_protocol_file_is_a_source_named_by_its_name(tmp_path: Path) -> None:
    from harness.sources import REGISTRY, source_spec

    spec = source_spec(str(_halfdepth(tmp_path)))
    assert (spec.name, spec.kind) == ("halfdepth", "runner")
    assert {"paper", "mini", "pythia"} <= set(REGISTRY)
    assert source_spec("mini") == REGISTRY["mini"]


def test_a_protocol_file_with_no_weights_is_skipped_with_the_reason(tmp_path: Path) -> None:
    from harness.sources import SourceUnavailable, load_source

    empty = tmp_path / "models"
    (empty / "sender").mkdir(parents=True)
    (empty / "receiver").mkdir(parents=True)
    with pytest.raises(SourceUnavailable, match=r"lacks config\.json, model\.safetensors"):
        load_source(str(_halfdepth(tmp_path, models=str(empty))))


def test_an_unknown_source_name_is_a_one_line_error() -> None:
    from harness.sources import source_spec

    with pytest.raises(HarnessError, match="unknown source 'pythai'"):
        source_spec("pythai")


def test_claims_collect_under_the_protocol_file_name(tmp_path: Path) -> None:
    toml = _halfdepth(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "claims", "--collect-only", "-q", "--source", str(toml)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ids = {ln.split("[")[-1].rstrip("]") for ln in out.splitlines() if "::" in ln}
    assert ids == {"halfdepth"}, out[-2000:]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("nosuch", "--source: unknown source 'nosuch' -- use one of: paper"),
        ("BAD", "missing protocol key prompt.receiver_template -- add it"),
    ],
)
def test_a_bad_source_stops_the_claims_run_with_one_line(
    tmp_path: Path, token: str, message: str
) -> None:
    """An unknown source name or a protocol file that does not load is a usage error before
    collection (exit 4, one line), not one error per claim."""
    if token == "BAD":
        toml = _halfdepth(tmp_path)
        text = toml.read_text()
        toml.write_text(
            "\n".join(ln for ln in text.splitlines() if not ln.startswith("receiver_template"))
        )
        token = str(toml)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "claims", "-q", "-p", "no:cacheprovider",
         "--source", f"paper,{token}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ERROR: --source: "), proc.stderr
    assert message in lines[0] and "Traceback" not in proc.stdout + proc.stderr


def test_the_sources_package_re_exports_every_public_name_of_its_modules() -> None:
    """``from harness.sources import X`` works for whatever a module of the package offers
    (one module per concept: source, registry, artifact, store)."""
    import importlib

    import harness.sources as pkg

    for module in ("source", "registry", "artifact", "store"):
        mod = importlib.import_module(f"harness.sources.{module}")
        missing = [n for n in mod.__all__ if getattr(pkg, n, None) is not getattr(mod, n)]
        assert not missing, f"harness.sources does not re-export {module}.{missing}"
        assert set(mod.__all__) <= set(pkg.__all__)
