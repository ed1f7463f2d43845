"""The claims suite is a real gate: breaking the data turns specific claims and snapshots red."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ARTIFACT, needs_artifact

ROOT = Path(__file__).resolve().parent.parent


def _run_claims(artifact: Path, tmp_path: Path, *args: str) -> tuple[int, str]:
    """``pytest claims --source paper`` on ``artifact`` in a subprocess (``args``: scheduling
    and verbosity; single-process and quiet by default); the status file goes to
    ``tmp_path/status.json``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "claims",
            "--source",
            "paper",
            "-p",
            "no:cacheprovider",
            *(args or ("-p", "no:xdist", "-q")),
            "--artifact",
            str(artifact),
            "--claims-status",
            str(tmp_path / "status.json"),
        ],
        cwd=ROOT,
        env={**os.environ, "HARNESS_ARTIFACT": str(artifact)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout


@needs_artifact
@pytest.mark.slow
def test_altering_one_prediction_turns_specific_claims_and_snapshots_red(tmp_path: Path) -> None:
    copy = tmp_path / "artifact"
    shutil.copytree(ARTIFACT, copy)
    target = copy / "results" / "final" / "h1_b_to_b_self_inject_fwd_deterministic.json"
    data = json.loads(target.read_text())
    row = next(
        r for r in data["per_sample"] if r["gold"].lower() in r["prediction"].lower().split()
    )
    row["prediction"] = "I do not know."
    target.write_text(json.dumps(data))

    code, out = _run_claims(copy, tmp_path)
    failed = {
        line.split("::")[-1].split(" ")[0] for line in out.splitlines() if line.startswith("FAILED")
    }
    assert code == 1
    assert {
        "test_self_injection_exactly_matches_no_injection[paper]",
        "test_self_injection_reproduces_no_injection_predictions_verbatim[paper]",
        "test_summary_table_is_unchanged[paper]",
        "test_paired_comparisons_are_unchanged[paper]",
    } <= failed, out[-3000:]
    # Claims that do not depend on the altered file stay green.
    assert not any("replacement_is_destructive" in f for f in failed), failed


@needs_artifact
@pytest.mark.slow
def test_loadgroup_scheduling_keeps_a_source_on_one_worker_and_records_its_status(
    tmp_path: Path,
) -> None:
    """``--dist loadgroup``: every claim of a source runs on the same xdist worker, and the
    claim-status file still keys outcomes by the bare source name."""
    code, out = _run_claims(ARTIFACT, tmp_path, "-n", "2", "--dist", "loadgroup", "-v")
    assert code == 0, out[-3000:]
    ran = [line for line in out.splitlines() if line.startswith("[gw") and "[paper]" in line]
    workers = {line.split("]")[0] for line in ran}
    assert len(ran) > 30 and len(workers) == 1, (workers, out[-2000:])
    recorded = json.loads((tmp_path / "status.json").read_text())["claims"]
    sources = {src for per_source in recorded.values() for src in per_source}
    assert "paper" in sources and not any("]" in s or "@" in s for s in sources), sources
