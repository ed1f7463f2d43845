"""No run loses data: kill -9 and resume, concurrent runs into one folder, a corrupt cache.

A run killed at any point leaves only complete result files (temp files are dot-prefixed
``.tmp`` that no loader reads); re-running completes the grid and every file equals, field
for field apart from timings, the file of an uninterrupted run. Processes sharing one output
folder fit each translator once (file lock) and agree; a corrupt cached translator is
detected and refitted to the same weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.analysis.results import load_result_file
from harness.run.runner import run_protocol

ROOT = Path(__file__).resolve().parent.parent
N_FILES = 10  # the tiny grid with one seed: 3 deterministic + 6 seeded + 1 strict
TEMP = re.compile(r"^\..+\.tmp$")


@pytest.fixture(scope="module")
def reference(tiny_protocol, tmp_path_factory) -> Path:
    """An uninterrupted run, in process."""
    out = tmp_path_factory.mktemp("reference")
    run_protocol(str(tiny_protocol), out, progress=False, threads=1)
    assert len(list(out.glob("*.json"))) == N_FILES
    return out


def stable(path: Path) -> str:
    """A result file without its volatile fields (times, timings, git hash), as JSON text."""
    data = json.loads(path.read_text(encoding="utf-8"))
    data.pop("created_at")
    data.pop("elapsed_sec")
    data["provenance"].pop("timings")
    data["provenance"].pop("git_hash")  # the lead may commit between two runs
    if "translator" in data:
        data["translator"].pop("fit_seconds")
    return json.dumps(data, ensure_ascii=False)


def assert_same_files(out: Path, reference: Path, names: list[str] | None = None) -> None:
    """``out`` holds the same result files as ``reference`` (or its ``names``), timings apart."""
    want = names or sorted(p.name for p in reference.glob("*.json"))
    names = sorted(p.name for p in out.glob("*.json"))
    assert names == want
    for name in names:
        assert stable(out / name) == stable(reference / name), name


def assert_no_partial_files(out: Path) -> None:
    """Every ``*.json`` is a complete, valid result; anything else is a dot-prefixed temp."""
    for p in out.iterdir():
        if p.is_dir():
            continue
        if p.suffix == ".json":
            load_result_file(p)  # raises on a partial or invalid file
        else:
            assert TEMP.match(p.name), f"stray file {p.name}"


def spawn(
    protocol: Path, out: Path, log: Path, *extra: str, run_args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """``python -m harness [extra] run ...`` in the background; stdout and stderr go to ``log``
    (a file, not a pipe: a full pipe would block a process that holds the translator lock)."""
    argv = [sys.executable, "-m", "harness", *extra, "run", "--protocol", str(protocol)]
    argv += ["--out", str(out), "--threads", "1", "--no-progress", *run_args]
    with open(log, "wb") as fh:
        return subprocess.Popen(argv, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)


def test_a_killed_run_resumes_to_the_files_of_an_uninterrupted_run(
    tiny_protocol, reference, tmp_path
):
    out = tmp_path / "out"
    log = tmp_path / "run.log"
    proc = spawn(tiny_protocol, out, log)
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob("h1_*.json")):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no result file within 90 s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert 1 <= len(done) < N_FILES, "the run finished before the kill"
    assert_no_partial_files(out)

    run_protocol(str(tiny_protocol), out, progress=False, threads=1)
    assert {n: (out / n).read_bytes() for n in done} == done  # kept, not recomputed
    assert_no_partial_files(out)
    assert_same_files(out, reference)


def test_processes_sharing_one_folder_fit_each_translator_once_and_agree(
    tiny_protocol, reference, tmp_path, caplog
):
    """A subprocess and this process run into one folder at the same time."""
    out = tmp_path / "shared"
    conditions = ["replace", "additive", "no_inject"]  # translator conditions first
    log = tmp_path / "sub.log"
    proc = spawn(
        tiny_protocol, out, log, "--debug", run_args=("--conditions", ",".join(conditions))
    )
    try:
        deadline = time.monotonic() + 90
        while not (out / ".cache" / "translators").is_dir():  # it is about to take the lock
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the subprocess never reached the translator"
            time.sleep(0.01)
        with caplog.at_level(logging.INFO, logger="harness.run.translators"):
            run_protocol(str(tiny_protocol), out, conditions=conditions, progress=False, threads=1)
        assert proc.wait(timeout=180) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    fits = [
        line
        for line in log.read_text().splitlines()
        if "harness.run.translators: translator " in line
    ]
    fits += [r.getMessage() for r in caplog.records if r.getMessage().startswith("translator ")]
    assert len(fits) == 1, fits  # the other process waited on the lock and loaded it
    assert_no_partial_files(out)
    names = sorted(
        [
            "h1_additive_fwd_seed42.json",
            "h1_no_inject_fwd_deterministic.json",
            "h1_replace_fwd_seed42.json",
        ]
    )
    assert_same_files(out, reference, names=names)


def _corrupt_truncate(st: Path) -> None:
    st.write_bytes(st.read_bytes()[:100])


def _corrupt_flip(st: Path) -> None:
    data = bytearray(st.read_bytes())
    data[-8] ^= 0xFF  # a weight byte: still parses, the checksum catches it
    st.write_bytes(bytes(data))


def _corrupt_sidecar(st: Path) -> None:
    st.with_suffix(".json").unlink()


def _edit_cached_cosine(st: Path) -> None:
    """The metrics beside the weights edited (result files copy them): the record's
    checksum fails, so the translator is refitted rather than its cosine reported."""
    meta = json.loads(st.with_suffix(".json").read_text())
    meta["metrics"]["normalized_cosine"] = 0.97
    st.with_suffix(".json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "corrupt",
    [_corrupt_truncate, _corrupt_flip, _corrupt_sidecar, _edit_cached_cosine],
    ids=["truncated", "flipped-byte", "sidecar-missing", "edited-cosine"],
)
def test_a_corrupt_cached_translator_is_detected_and_refitted(
    tiny_protocol, reference, tmp_path, caplog, corrupt
):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (st,) = (out / ".cache" / "translators").glob("*/*.safetensors")
    corrupt(st)
    for p in out.glob("h1_*.json"):
        if "translator" in json.loads(p.read_text()):
            p.unlink()
    with caplog.at_level(logging.WARNING, logger="harness.runner"):
        run_protocol(str(tiny_protocol), out, progress=False, threads=1)
    assert any("refitting it" in r.getMessage() for r in caplog.records)
    assert_same_files(out, reference)
    assert st.read_bytes() == next((reference / ".cache").rglob("*.safetensors")).read_bytes()


def test_processes_sharing_jobs_split_the_grid_and_compute_each_artefact_once(
    tiny_protocol, reference, tmp_path, monkeypatch
):
    """``share_jobs``: two processes fill one folder together (as two xdist workers fill one
    cache entry); every result file, activation set and translator is computed once, and
    the files equal an uninterrupted single run."""
    from harness.events import count_events

    out = tmp_path / "grid"
    events = tmp_path / "events.jsonl"
    log = tmp_path / "sub.log"
    code = (
        "import sys; from harness.run.runner import run_protocol; "
        "run_protocol(sys.argv[1], sys.argv[2], progress=False, threads=1, share_jobs=True)"
    )
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(tiny_protocol), str(out)],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HARNESS_EVENTS": str(events)},
        )
    try:
        deadline = time.monotonic() + 90
        while not list(out.glob("*.json")):  # the subprocess is into the grid
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no result file within 90 s"
            time.sleep(0.01)
        monkeypatch.setenv("HARNESS_EVENTS", str(events))
        run_protocol(str(tiny_protocol), out, progress=False, threads=1, share_jobs=True)
        assert proc.wait(timeout=180) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    counts = count_events(events)
    assert set(counts) == {"result_file", "activations", "translator"}
    assert all(n == 1 for per_key in counts.values() for n in per_key.values()), counts
    assert len(counts["result_file"]) == N_FILES
    pids = {json.loads(line)["pid"] for line in events.read_text().splitlines()}
    assert pids == {proc.pid, os.getpid()}  # both did part of the work
    assert_no_partial_files(out)
    assert_same_files(out, reference)
    assert list((out / ".cache" / "activations").rglob("*.safetensors"))  # the shared sets


def test_a_mismatched_activation_cache_file_is_recaptured(tmp_path) -> None:
    import torch

    from harness.model.activations import Activations
    from harness.run.cache import load_activations as _load_activations
    from harness.run.cache import save_activations as _save_activations

    ids = [[5, 6, 7], [8, 9]]
    acts = Activations(site="s", states=(torch.ones(3, 4), torch.zeros(2, 4)), token_ids=())
    path = tmp_path / "a.safetensors"
    _save_activations(path, acts)
    back = _load_activations(path, "s", ids)
    assert back is not None and all(
        torch.equal(a, b) for a, b in zip(back.states, acts.states, strict=True)
    )
    assert _load_activations(path, "s", [[5, 6, 7], [8]]) is None  # other prompts
    assert _load_activations(path, "s", [*ids, [1]]) is None  # more prompts
    path.write_bytes(path.read_bytes()[:20])  # truncated
    assert _load_activations(path, "s", ids) is None
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temp behind


def test_a_scaled_or_nan_activation_cache_file_is_detected_and_recaptured(tmp_path) -> None:
    """The cached states carry a SHA-256: a file rewritten with other values (scaled by 7,
    or NaN) under the old digest is refused, as is one with NaN whatever its digest."""
    import torch
    from safetensors.torch import load_file, save_file

    from harness.model.activations import Activations
    from harness.run.cache import load_activations as _load_activations
    from harness.run.cache import save_activations as _save_activations
    from harness.run.cache import states_digest as _states_digest

    ids = [[5, 6, 7], [8, 9]]
    acts = Activations(site="s", states=(torch.ones(3, 4), torch.full((2, 4), 2.0)), token_ids=())
    path = tmp_path / "a.safetensors"
    _save_activations(path, acts)
    tensors = load_file(str(path))
    digest = _states_digest(acts.states)
    save_file({k: v * 7 for k, v in tensors.items()}, str(path), metadata={"sha256": digest})
    assert _load_activations(path, "s", ids) is None
    nan = {k: torch.full_like(v, float("nan")) for k, v in tensors.items()}
    save_file(nan, str(path), metadata={"sha256": _states_digest(list(nan.values()))})
    assert _load_activations(path, "s", ids) is None
    save_file(tensors, str(path))  # no digest at all (an older cache): recaptured too
    assert _load_activations(path, "s", ids) is None


# -- stale artefacts: every cached artefact is keyed by, or checked against, its inputs ---------
STALE_CONDITIONS = ["no_inject", "replace"]  # one file without a translator, one with


def _new_receiver_weights(root: Path) -> tuple[dict, str]:
    from tests.model_fixtures import tiny_model

    tiny_model(7, hidden=48, layers=6).save_pretrained(root / "receiver")
    return {}, "receiver weights changed"


def _new_tokenizer(root: Path) -> tuple[dict, str]:
    from tests.model_fixtures import build_char_tokenizer

    build_char_tokenizer(root / "tok", reverse=True)  # same text, other ids
    return {}, "tokenizer changed"


def _new_eval_file(root: Path) -> tuple[dict, str]:
    """One gold answer edited, and the protocol's pinned SHA-256 updated to match."""
    from harness.io import sha256_file

    ev = root / "eval.jsonl"
    old = sha256_file(ev)
    rows = [json.loads(line) for line in ev.read_text().splitlines()]
    rows[0]["answer"] += "x"
    ev.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (proto,) = root.glob("*.toml")
    proto.write_text(proto.read_text().replace(old, sha256_file(ev)))
    return {}, "eval file changed"


def _new_training_file(root: Path) -> tuple[dict, str]:
    tr = root / "train.jsonl"
    lines = tr.read_text().splitlines()
    tr.write_text("\n".join(lines[::-1]) + "\n")  # the same prompts in another order
    return {}, "translator-training file changed"


def _random_init(root: Path) -> tuple[dict, str]:
    return {"init": "random"}, "init mode changed (pretrained -> random:0)"


CHANGES = {
    "weights": (_new_receiver_weights, {"activations", "translators"}),
    "tokenizer": (_new_tokenizer, {"translators"}),
    # the eval's SHA-256 is pinned by the protocol: a new protocol hash keys every cache
    "eval file": (_new_eval_file, {"activations", "translators"}),
    "training file": (_new_training_file, {"translators"}),
    "init mode": (_random_init, {"activations", "translators"}),
}


def _cache_entries(out: Path, kind: str) -> set[str]:
    folder = out / ".cache" / kind
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.mark.parametrize("change", list(CHANGES), ids=[f"{k} changed" for k in CHANGES])
def test_a_resumed_folder_refuses_result_files_of_other_inputs_and_recomputes_its_caches(
    tmp_path, capsys, change
):
    """Two runs into one folder with one input changed in between (weights, tokenizer, eval
    file, training file, init mode): the second stops with one line naming the file and what
    changed, leaving the old files as they were; once the stale files are deleted the run
    recomputes the caches that depend on the input (a new cache entry) and writes exactly
    the files of a fresh folder with the new input, never a file of the old one."""
    from harness.cli import main
    from tests.model_fixtures import build_tiny_experiment

    root = tmp_path / "exp"
    protocol = build_tiny_experiment(root, seeds=(42,))
    out = tmp_path / "out"
    run = dict(conditions=STALE_CONDITIONS, progress=False, threads=1)
    run_protocol(str(protocol), out, **run)
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    entries = {k: _cache_entries(out, k) for k in ("activations", "translators")}
    assert len(before) == 2 and all(entries.values())

    make_change, recomputed = CHANGES[change]
    extra, what = make_change(root)
    argv = ["run", "--protocol", str(protocol), "--out", str(out), "--threads", "1"]
    argv += ["--conditions", ",".join(STALE_CONDITIONS), "--no-progress"]
    argv += [f"--{k}={v}" for k, v in extra.items()]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot resume: ") and err.count("\n") == 1, err
    assert what in err and "was computed from other inputs" in err, err
    assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before  # nothing mixed

    for p in out.glob("*.json"):
        p.unlink()
    run_protocol(str(protocol), out, **run, **extra)
    fresh = tmp_path / "fresh"
    run_protocol(str(protocol), fresh, **run, **extra)
    assert_same_files(out, fresh)  # no stale cache entry reached a result file
    for kind in ("activations", "translators"):
        grew = _cache_entries(out, kind) - entries[kind]
        assert bool(grew) == (kind in recomputed), (kind, grew)
    for p in out.glob("*.json"):
        assert p.read_bytes() not in before.values()
