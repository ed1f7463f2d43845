"""A Pythia revision sweep with a local stand-in (issue #29): ``models.revision`` values name
hub checkpoints, resolved offline from the Hugging Face cache where present and skipped with
the reason where not.

The stand-in is a Hugging Face cache folder of our own (``HF_HUB_CACHE``) holding two tiny
random GPT-NeoX models under hub ids, each saved under the revision ``step1`` only (the
layout the hub client writes: ``refs/step1`` naming a snapshot commit), so the point at
``step1`` resolves and runs offline and the point at ``step2`` is skipped, naming the
revision and how to fetch it. Subprocesses: the hub client reads ``HF_HUB_CACHE`` once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.io import sha256_file
from tests.helpers import ROOT
from tests.model_fixtures import EVAL_ROWS, build_char_tokenizer, tiny_model, write_tiny_protocol

SENDER, RECEIVER = "stand-in/pythia-tiny-a", "stand-in/pythia-tiny-b"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root: Path) -> Path:
    """A Hugging Face hub cache holding the sender and receiver at revision ``step1``."""
    for seed, (repo, hidden, layers) in enumerate([(SENDER, 32, 3), (RECEIVER, 48, 6)], 1):
        folder = root / f"models--{repo.replace('/', '--')}"
        tiny_model(seed, hidden=hidden, layers=layers).save_pretrained(
            folder / "snapshots" / COMMIT
        )
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "step1").write_text(COMMIT, encoding="utf-8")
    return root


def _experiment(d: Path) -> Path:
    build_char_tokenizer(d / "tok")
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in EVAL_ROWS))
    train = [{k: v for k, v in r.items() if k != "clean_eval_id"} for r in EVAL_ROWS * 2]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    proto = write_tiny_protocol(
        d,
        sender=SENDER,
        receiver=RECEIVER,
        tokenizer=str(d / "tok"),
        eval_path=str(d / "eval.jsonl"),
        eval_sha=sha256_file(d / "eval.jsonl"),
        train_path=str(d / "train.jsonl"),
        n=len(EVAL_ROWS),
        strict_n=2,
        seeds=(42,),
        overrides={
            "models": {"revision": "step1"},
            "run": {
                "conditions": ["no_inject", "additive", "replace"],
                "strict_conditions": [],
                "appendix_conditions": [],
            },
            "audit": {"conditions": ["no_inject"]},
        },
    )
    sweep = d / "revisions.toml"
    sweep.write_text(
        f'[sweep]\nname = "revisions"\ndescription = "stand-in checkpoints"\nbase = "{proto}"\n'
        '[[axis]]\nkey = "models.revision"\nvalues = ["step1", "step2"]\n'
        'x = [1, 2]\ntitle = "training step"\n',
        encoding="utf-8",
    )
    return sweep


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(
        HF_HUB_CACHE=str(_hub_cache(tmp / "hub")),
        HF_HUB_OFFLINE="1",
        HARNESS_CACHE=str(tmp / "cache"),
    )
    return env


def test_a_revision_sweep_resolves_cached_checkpoints_offline_and_skips_absent_ones(
    tmp_path: Path,
) -> None:
    sweep = _experiment(tmp_path)
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "harness", "sweep", "run", str(sweep), "--engine", "local"]
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = {ln.split(":", 1)[0].strip(): ln for ln in r.stdout.splitlines() if ": " in ln}
    assert "computed 3 result files" in lines["step1"], r.stdout
    assert (
        f"skipped: weights not found: {SENDER}, {RECEIVER} at revision step2 (not a local "
        "folder, not in the Hugging Face cache)" in lines["step2"]
    ), r.stdout
    assert f"huggingface-cli download {SENDER} {RECEIVER} --revision step2" in lines["step2"]
    # the step1 point was computed from the cached snapshot, and is sealed like any source
    done = sorted((tmp_path / "cache" / "sweep").glob("*/complete.json"))
    assert len(done) == 1
    files = sorted((done[0].parent / "results").glob("h1_*.json"))
    assert len(files) == 3
    prov = json.loads(files[0].read_text(encoding="utf-8"))["provenance"]
    assert prov["protocol_hash"] in done[0].parent.name
    # the claims read it as a source (no recompute); the absent revision is unavailable,
    # with the same reason the claims skip with
    probe = (
        "import sys\n"
        "from harness.sources import SourceUnavailable, computation_count\n"
        "from harness.sweep import load_point_source\n"
        "src = load_point_source(sys.argv[1] + '#step1')\n"
        "print('step1', src.name, len(src.results.files), computation_count())\n"
        "try:\n"
        "    load_point_source(sys.argv[1] + '#step2')\n"
        "except SourceUnavailable as exc:\n"
        "    print('step2', exc)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe, str(sweep)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "step1 revisions/step1 3 1", r.stdout  # one computation: the sweep run's
    assert out[1].startswith(f"step2 weights not found: {SENDER}, {RECEIVER} at revision step2")
