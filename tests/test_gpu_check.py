"""The prepared device check (harness/tools/gpu-check, harness/tools/gpu_check.py) on the CPU: every code
path it takes on the GPU machine, on the tiny pair, so the one device run it gets works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.model_fixtures import build_tiny_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_the_device_check_runs_end_to_end_and_reports_every_number(tmp_path: Path) -> None:
    proto = build_tiny_experiment(tmp_path / "exp", seeds=(42,))
    out = tmp_path / "OUT"
    env = {
        **os.environ,
        "OUT": str(out),
        "PY": sys.executable,
        "GPU_CHECK_WORK": str(tmp_path / "work"),
    }
    args = [
        "--device", "cpu", "--mini-protocol", str(proto), "--grid-protocol", str(proto),
        "--grid-init", "pretrained", "--slice-rows", "2", "--cpu-threads", "1", "--mm-n", "64",
    ]  # fmt: skip
    proc = subprocess.run(
        ["bash", str(ROOT / "harness" / "tools" / "gpu-check"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dest = out / "gpu-check"
    assert sorted(p.name for p in dest.iterdir()) == [
        "environment.txt",
        "gpu_check.json",
        "log.txt",
    ]
    report = json.loads((dest / "gpu_check.json").read_text())
    # parity: the same grid on "the device" (here the CPU, batch auto) and on the CPU
    per_cond = report["parity"]["per_condition"]
    assert "replace" in per_cond and "zero_replacement" in per_cond
    assert all(e["differing"] == 0 and e["rows"] > 0 for e in per_cond.values())
    assert report["parity"]["missing_on_device"] == []
    grid, b1, tp = report["grid"], report["batch1"], report["throughput"]
    assert (
        grid["files"] == 10 and grid["wall_s"] > 0
    )  # 9 conditions and the strict control, one seed
    assert set(b1["per_row_s"]) == {"no_inject", "replace", "nl_relay"}
    assert b1["grid_extrapolated_s"] > 0 and b1["speedup"] > 0
    assert tp["mm_roofline_tflops"] > 0 and tp["useful_tflops_no_inject"] > 0
    assert tp["injected_over_plain"] > 0
    assert "parity cpu vs cpu" in proc.stdout and "batch-1 loop" in proc.stdout
