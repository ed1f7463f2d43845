"""The prepared device check of issue #21: one script, run once on a GPU machine.

Measures, side by side in one run, on ``--device`` (``cuda`` on the GPU machine):

1. **Parity**: the mini grid (every condition, appendix and extensions) on the device with
   ``--batch-size auto`` against the same grid on the CPU; predictions differing per
   condition.
2. **The grid at Pythia shape**: the paper protocol's grid (random init at Pythia-160M ->
   410M shape, the paper's eval prompts) with ``--batch-size auto``: wall time from the
   process start, translator fits and relay included, and each file's generation time. The
   GPT-NeoX tokenizer is not available offline, so random init reads the prompts with the
   mini word-level tokenizer: prompt lengths are the prompts' word counts, not the paper's
   BPE lengths (``python -m harness bench`` times the paper's exact lengths).
3. **The paper's batch-1 loop**: a slice (``--slice-rows`` rows of three files) at batch
   size 1, extrapolated per 396-row file; the ratio of (2) to it.
4. **Throughput**: useful matmul TFLOP/s of the no-injection file against a ``torch.mm``
   roofline read on the same device in the same run, and the injected / plain throughput
   ratio.

Writes ``<out>/gpu_check.json`` and prints a summary. It asserts nothing; the goals (the grid
in <= 90 s, >= 100x the batch-1 loop, injected/plain >= 0.95, no differing prediction) are
printed next to the numbers.

    python -m harness.tools.gpu_check --out "$OUT/gpu-check"             # on the GPU machine
    python -m harness.tools.gpu_check --device cpu --out out/gpu-check     # the same code paths here
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

SLICE_CONDITIONS = ("no_inject", "replace", "nl_relay")


def _run(args: list[str], env: dict[str, str] | None = None) -> float:
    """``python -m harness run ARGS`` in a fresh process; its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness", "run", "--no-progress", *args],
        check=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    return time.perf_counter() - t0


def _files(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("h1_*.json"))}


def parity(device_dir: Path, cpu_dir: Path) -> dict[str, Any]:
    """Per condition: predictions that differ between the two folders, and files compared."""
    dev, cpu = _files(device_dir), _files(cpu_dir)
    out: dict[str, dict[str, int]] = {}
    for name, data in dev.items():
        entry = out.setdefault(data["condition"], {"files": 0, "differing": 0, "rows": 0})
        other = {r["sample_id"]: r["prediction"] for r in cpu[name]["per_sample"]}
        entry["files"] += 1
        entry["rows"] += len(data["per_sample"])
        entry["differing"] += sum(
            1 for r in data["per_sample"] if other.get(r["sample_id"]) != r["prediction"]
        )
    missing = sorted(set(cpu) - set(dev))
    return {"per_condition": out, "missing_on_device": missing}


def generation_seconds(folder: Path) -> dict[str, tuple[float, int]]:
    """Per file: the generation seconds its provenance records and its row count."""
    return {
        name: (float(d["provenance"]["timings"]["generation_s"]), len(d["per_sample"]))
        for name, d in _files(folder).items()
    }


def roofline_tflops(device: str, n: int) -> float:
    """Achieved TFLOP/s of a float32 ``torch.mm`` of two n x n matrices on ``device``."""
    import torch

    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def useful_tflops(folder: Path, protocol: str, init: str, device: str) -> float | None:
    """Useful matmul TFLOP/s of the no-injection file: its FLOPs (prompt lengths it records,
    the protocol's answer budget) over its generation seconds."""
    from harness.model.models import load_pair
    from harness.protocol import load_protocol
    from harness.tools.bench import generation_matmul_flops

    path = folder / "h1_no_inject_fwd_deterministic.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    proto = load_protocol(protocol)
    pair = load_pair(proto, device="cpu", init=init)
    lens = [r["prompt_len_b"] for r in data["per_sample"]]
    flops = generation_matmul_flops(pair.receiver, lens, proto.decoding.max_new_tokens)
    return flops / float(data["provenance"]["timings"]["generation_s"]) / 1e12


def summarize(
    out: Path, *, device: str, grid_protocol: str, grid_init: str, n_rows: int, mm_n: int
) -> dict[str, Any]:
    """Everything the check measured, from the folders the runs wrote under ``out``."""
    times = json.loads((out / "wall_seconds.json").read_text())
    report: dict[str, Any] = {"device": device, "wall_seconds": times}
    if (out / "mini-device").is_dir() and (out / "mini-cpu").is_dir():
        report["parity"] = parity(out / "mini-device", out / "mini-cpu")
    grid = generation_seconds(out / "grid-auto")
    sliced = generation_seconds(out / "grid-batch1")
    per_row_b1 = {
        json.loads((out / "grid-batch1" / n).read_text())["condition"]: s / rows
        for n, (s, rows) in sliced.items()
    }
    grid_files = _files(out / "grid-auto")
    # the batch-1 loop over the whole grid: each file at its condition's per-row time (the
    # relay's for the relay, no-injection's for no-injection, replace's for any injection)
    extrapolated = 0.0
    for data in grid_files.values():
        cond = data["condition"]
        key = cond if cond in per_row_b1 else "replace"
        extrapolated += per_row_b1[key] * n_rows
    wall = times["grid_auto"]
    plain = grid.get("h1_no_inject_fwd_deterministic.json")
    injected = [s for n, (s, _) in grid.items() if n.startswith("h1_replace_")]
    report["grid"] = {
        "files": len(grid_files),
        "wall_s": wall,
        "generation_s": {n: s for n, (s, _) in grid.items()},
        "batch_size": next(iter(grid_files.values()))["provenance"]["batch_size"]
        if grid_files
        else None,
        "translator_fit_s": sorted(
            {
                round(float(d["translator"]["fit_seconds"]), 3)
                for d in grid_files.values()
                if d.get("translator") and "fit_seconds" in d["translator"]
            }
        ),
    }
    report["batch1"] = {
        "per_row_s": per_row_b1,
        "per_file_s": {c: s * n_rows for c, s in per_row_b1.items()},
        "grid_extrapolated_s": extrapolated,
        "speedup": extrapolated / wall if wall else None,
    }
    report["throughput"] = {
        "mm_roofline_tflops": roofline_tflops(device, mm_n),
        "useful_tflops_no_inject": useful_tflops(
            out / "grid-auto", grid_protocol, grid_init, device
        ),
        "injected_over_plain": (plain[0] / (sum(injected) / len(injected)))
        if plain and injected
        else None,
    }
    report["goals"] = {
        "grid_s_at_most": 90,
        "speedup_at_least": 100,
        "injected_over_plain_at_least": 0.95,
        "differing_predictions": 0,
    }
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/gpu-check")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--mini-protocol", default="mini", help="the parity grid's protocol")
    ap.add_argument("--grid-protocol", default="paper", help="the timed grid's protocol")
    ap.add_argument("--grid-init", default="random", help="random: Pythia shape, no weights")
    ap.add_argument("--slice-rows", type=int, default=16, help="rows of the batch-1 slice")
    ap.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--mm-n", type=int, default=8192, help="torch.mm roofline size")
    ap.add_argument("--skip-parity", action="store_true")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    cache = {"HARNESS_CACHE": str(out / "cache")}
    if not args.skip_parity:
        mini = ["--protocol", args.mini_protocol, "--conditions", "all"]
        times["mini_device"] = _run(
            [*mini, "--out", str(out / "mini-device"), "--device", args.device,
             "--batch-size", "auto"], cache,
        )  # fmt: skip
        times["mini_cpu"] = _run(
            [*mini, "--out", str(out / "mini-cpu"), "--device", "cpu",
             "--threads", str(args.cpu_threads)], cache,
        )  # fmt: skip
    grid = ["--protocol", args.grid_protocol, "--init", args.grid_init, "--device", args.device]
    times["grid_auto"] = _run(
        [*grid, "--out", str(out / "grid-auto"), "--batch-size", "auto", "--no-extension"], cache
    )
    times["grid_batch1_slice"] = _run(
        [*grid, "--out", str(out / "grid-batch1"), "--batch-size", "1", "--no-extension",
         "--limit", str(args.slice_rows), "--conditions", *SLICE_CONDITIONS, "--seeds", "42"],
        cache,
    )  # fmt: skip
    (out / "wall_seconds.json").write_text(json.dumps(times, indent=1) + "\n")
    from harness.protocol import load_protocol

    n_rows = load_protocol(args.grid_protocol).eval.n
    report = summarize(
        out,
        device=args.device,
        grid_protocol=args.grid_protocol,
        grid_init=args.grid_init,
        n_rows=n_rows,
        mm_n=args.mm_n,
    )
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    g, b, t = report["grid"], report["batch1"], report["throughput"]
    print(f"device {args.device}: grid of {g['files']} files in {g['wall_s']:.1f} s "
          f"(batch {g['batch_size']}); batch-1 loop extrapolated {b['grid_extrapolated_s']:.0f} s "
          f"-> {b['speedup']:.1f}x")  # fmt: skip
    inj = t["injected_over_plain"]
    useful = t["useful_tflops_no_inject"]
    print(f"useful {useful or 0:.3f} TFLOP/s vs torch.mm {t['mm_roofline_tflops']:.2f} TFLOP/s; "
          f"injected/plain {inj if inj is None else round(inj, 3)}")  # fmt: skip
    if "parity" in report:
        diff = {c: e["differing"] for c, e in report["parity"]["per_condition"].items()}
        print(f"parity {args.device} vs cpu, differing predictions: {diff}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
