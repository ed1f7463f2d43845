"""``python -m harness bench``: performance ratios, measured side by side in one run.

1. injected / plain generation throughput (replace, additive) at Pythia-410M shape, random
   weights, same batch; and our loop / Hugging Face ``generate``;
2. batched (batch 32, left padded) / per-sample throughput on the paper's prompt lengths;
3. ``pytest claims -n 2`` wall time cold vs warm, per source;
4. the mini grid's wall time and how often each artefact (activations, translator, result
   file) was computed across xdist workers (from the runner's event log);
5. achieved matmul FLOP/s of generation vs a plain ``torch.mm`` roofline, and vs the
   generation's own weight matmuls timed alone at the same shapes (the model's floor).

It prints a table and writes a JSON report; it asserts nothing (speed is not a test).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from harness.io import atomic_write_json

__all__ = ["generation_matmul_flops", "main_bench", "matmul_floor", "mm_roofline"]

ROOT = Path(__file__).resolve().parent.parent


def _time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def mm_roofline(n: int = 2048, repeats: int = 3) -> float:
    """Achieved GFLOP/s of a plain float32 ``torch.mm`` of two n x n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    secs = _time(lambda: torch.mm(a, b), repeats)
    return 2 * n**3 / secs / 1e9


def generation_matmul_flops(
    model: torch.nn.Module, prompt_lens: Sequence[int], new_tokens: int
) -> float:
    """Useful matmul FLOPs of greedy generation: 2 x (weights that multiply) x tokens.

    Every position of the prompt goes through every block's linear layers once, and so does
    every generated token but the last; the LM head runs once per new token (on the prompt's
    last position, then on each generated token but the last). The input embedding is a
    lookup (not counted) and attention-score FLOPs are ignored (small at these lengths).
    """
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    blocks = sum(p.numel() for p in model.parameters() if p.dim() == 2) - emb.numel()
    if head is not emb:
        blocks -= head.numel()
    steps = len(prompt_lens) * max(new_tokens - 1, 0)
    return 2.0 * (
        blocks * (sum(prompt_lens) + steps) + head.numel() * len(prompt_lens) * new_tokens
    )


def matmul_floor(
    model: torch.nn.Module, batch: int, prefill_rows: int, new_tokens: int
) -> dict[str, float]:
    """Seconds the generation's weight matmuls alone take, as the same linear layers.

    The same weights and shapes greedy generation multiplies: one prefill pass at
    ``prefill_rows`` rows (the padded prompt batch, ``batch x width``; or, where generation
    packs the weights and so multiplies only real prompt positions, their count) and
    ``new_tokens - 1`` decode passes at ``batch`` rows, through ``F.linear`` or the same
    packed layers (:func:`harness.packing.packed_linears`). This is the
    model's own cost at these shapes on this machine (decode at a few rows is bound by reading
    the weights, not by arithmetic), the ceiling our loop can approach; the square
    ``torch.mm`` roofline is the arithmetic ceiling.
    """
    import torch.nn.functional as F

    from harness.packing import _pack_wanted, _PackedLinear

    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    weights = [p for p in model.parameters() if p.dim() == 2 and p is not emb and p is not head]
    gen = torch.Generator().manual_seed(0)
    packed = _pack_wanted(model)

    def layer(w: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        if not packed:
            return lambda x: F.linear(x, w)
        shell = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        shell.weight = torch.nn.Parameter(w.detach(), requires_grad=False)
        return _PackedLinear(shell)

    layers = [(w.shape[1], layer(w)) for w in weights]
    head_layer = layer(head)

    def pass_(rows: int) -> Callable[[], None]:
        xs = {w.shape[1]: torch.randn(rows, w.shape[1], generator=gen) for w in weights}
        h = torch.randn(batch, head.shape[1], generator=gen)  # the head: last position only

        def run() -> None:
            with torch.inference_mode():
                for dim, lin in layers:
                    lin(xs[dim])
                head_layer(h)

        return run

    prefill, decode = pass_(prefill_rows), pass_(batch)
    prefill()
    decode()
    t_pre = _time(prefill, 2)
    t_dec = _time(decode, 3)
    params = sum(w.numel() for w in weights)
    return {
        "packed": float(packed),
        "prefill_s": t_pre,
        "decode_step_s": t_dec,
        "total_s": t_pre + max(new_tokens - 1, 0) * t_dec,
        "decode_gflops": 2 * (params + head.numel()) * batch / t_dec / 1e9,
        "prefill_gflops": 2 * (params * prefill_rows + head.numel() * batch) / t_pre / 1e9,
    }


def _prompt_lengths(k: int) -> list[int]:
    """The paper's receiver prompt lengths (from the artifact when present), first k rows."""
    from harness.artifact import find_artifact

    root = find_artifact()
    if root is not None:
        data = json.loads((root / "results/final/h1_no_inject_fwd_deterministic.json").read_text())
        lens = [r["prompt_len_b"] for r in data["per_sample"]]
    else:
        lens = [40 + (i * 7) % 25 for i in range(396)]
    return [lens[i % len(lens)] for i in range(k)]


def bench_generation(*, batch: int, new_tokens: int, repeats: int, shape: str) -> dict[str, Any]:
    from harness.activations import left_pad
    from harness.generate import GenerationSettings, generate_batch, generate_tokens
    from harness.injection import InjectionSpec, PrefillInjection, pad_sources
    from harness.models import load_model, resolve_block

    model = load_model(shape, init="random", seed=0)
    _, module, _ = resolve_block(model, 0.67)
    gen = torch.Generator().manual_seed(0)
    lens = _prompt_lengths(batch)
    prompts = [torch.randint(10, 50_000, (n,), generator=gen).tolist() for n in lens]
    settings = GenerationSettings(
        max_new_tokens=new_tokens,
        repetition_penalty=1.3,
        no_repeat_ngram_size=3,
        eos_token_id=None,
        pad_token_id=0,
    )
    ids, mask, _ = left_pad(prompts, 0)
    dim = model.config.hidden_size
    srcs = [torch.randn(n, dim, generator=gen) for n in lens]

    # Our variants go through generate_tokens, the runner's path (the CPU fast path of
    # harness.packing where it applies; the weights are packed once per model, as in a run,
    # at the warm-up call below).
    def plain() -> None:
        generate_tokens(model, prompts, settings, batch_size=batch)

    def unpacked() -> None:
        generate_batch(model, prompts, settings)  # the same loop without the CPU fast path

    def injected(spec: InjectionSpec) -> Callable[[], None]:
        def factory(idx: list[int], m: torch.Tensor) -> PrefillInjection:
            return PrefillInjection(
                module, spec, pad_sources([srcs[i] for i in idx], m.shape[1]), m
            )

        def run() -> None:
            generate_tokens(model, prompts, settings, batch_size=batch, injection=factory)

        return run

    def hf() -> None:
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                repetition_penalty=1.3,
                no_repeat_ngram_size=3,
                pad_token_id=0,
            )

    def per_sample() -> None:
        generate_tokens(model, prompts, settings, batch_size=1)

    plain()  # warm-up: allocator, kernels
    variants = {
        "plain": plain,
        "plain_unpacked": unpacked,
        "replace": injected(InjectionSpec("replace")),
        "additive": injected(InjectionSpec("additive", scale=0.01)),
        "hf_generate": hf,
    }
    # Interleaved rounds, each in a rotated order, best time per variant: a slow spell on a
    # shared machine then hits every variant alike instead of skewing one ratio.
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rounds[name].append(_time(variants[name], 1))
    t = {name: min(times) for name, times in rounds.items()}

    def paired(base: str, other: str) -> float:
        """Median over rounds of base/other within a round: the two ran minutes apart at
        most, so a slow spell that spans a round cancels out of the ratio."""
        return statistics.median(b / o for b, o in zip(rounds[base], rounds[other], strict=True))

    t["per_sample"] = _time(per_sample, 1)
    flops = generation_matmul_flops(model, lens, new_tokens)
    from harness.packing import _pack_wanted

    # packed models multiply only the real prompt positions at the prefill (real_rows_only)
    rows = sum(lens) if _pack_wanted(model) else batch * max(lens)
    floor = matmul_floor(model, batch, rows, new_tokens)
    return {
        "shape": shape,
        "batch": batch,
        "new_tokens": new_tokens,
        "prompt_len_mean": sum(lens) / len(lens),
        "seconds": {k: round(v, 3) for k, v in t.items()},
        "injected_over_plain_replace": t["plain"] / t["replace"],
        "injected_over_plain_additive": t["plain"] / t["additive"],
        "injected_over_plain_paired": {
            "replace": paired("plain", "replace"),
            "additive": paired("plain", "additive"),
        },
        "rounds_seconds": {k: [round(x, 3) for x in v] for k, v in rounds.items()},
        "ours_over_hf_generate": t["hf_generate"] / t["plain"],
        "packed_over_unpacked": t["plain_unpacked"] / t["plain"],
        "batched_over_per_sample": t["per_sample"] / t["plain"],
        "gflops_batched": flops / t["plain"] / 1e9,
        "gflops_per_sample": flops / t["per_sample"] / 1e9,
        "matmul_floor": {k: round(v, 4) for k, v in floor.items()},
        # share of our batched generation time that is the model's own matmul work
        "matmul_floor_over_plain": floor["total_s"] / t["plain"],
    }


def bench_claims(sources: Sequence[str], workers: int) -> dict[str, Any]:
    """Cold (empty cache) then warm ``pytest claims`` per source, with artefact counts."""
    from harness.events import count_events

    out: dict[str, Any] = {}
    for src in sources:
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "HARNESS_CACHE": f"{tmp}/cache",
                "HARNESS_EVENTS": f"{tmp}/events.jsonl",
            }
            cmd = [
                sys.executable,
                "-m",
                "pytest",
                "claims",
                "--source",
                src,
                "-n",
                str(workers),
                "-q",
                "-p",
                "no:cacheprovider",
                "--claims-status",
                f"{tmp}/status.json",
            ]
            runs = {}
            before: dict[str, int] = {}
            for phase in ("cold", "warm"):
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                seconds = time.perf_counter() - t0
                totals = {
                    k: sum(v.values()) for k, v in count_events(f"{tmp}/events.jsonl").items()
                }
                runs[phase] = {
                    "seconds": round(seconds, 2),
                    "exit_code": proc.returncode,
                    "summary": (proc.stdout.strip().splitlines() or [""])[-1],
                    # artefacts computed during this phase only
                    "events": {
                        k: n - before.get(k, 0) for k, n in totals.items() if n - before.get(k, 0)
                    },
                }
                before = totals
            ev = count_events(f"{tmp}/events.jsonl")
            grid = None
            done = list(Path(tmp, "cache").glob(f"{src}/*/complete.json"))
            if done:
                grid = json.loads(done[0].read_text()).get("seconds")
            out[src] = {
                **runs,
                "warm_over_cold": runs["warm"]["seconds"] / runs["cold"]["seconds"],
                "grid_seconds": grid,
                "max_computations_per_artefact": {k: max(v.values()) for k, v in ev.items()},
                "artefacts": {k: len(v) for k, v in ev.items()},
            }
    return out


def main_bench(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m harness bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/bench.json")
    p.add_argument("--shape", default="EleutherAI/pythia-410m", help="random-init architecture")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument(
        "--repeats", type=int, default=2, help="interleaved timing rounds (best per variant)"
    )
    p.add_argument("--sources", default="paper,mini", help="claims sources to time cold vs warm")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip", default="", help="comma list of parts to skip: generation,claims")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    report: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "roofline_gflops": mm_roofline(),
    }
    first_roofline = report["roofline_gflops"]
    if "generation" not in skip:
        g = bench_generation(
            batch=args.batch, new_tokens=args.new_tokens, repeats=args.repeats, shape=args.shape
        )
        # The roofline again after the generation runs; the higher reading counts, so a slow
        # spell during the first measurement cannot flatter the fractions below.
        report["roofline_readings_gflops"] = [first_roofline, mm_roofline()]
        report["roofline_gflops"] = max(report["roofline_readings_gflops"])
        g["batched_fraction_of_roofline"] = g["gflops_batched"] / report["roofline_gflops"]
        g["per_sample_fraction_of_roofline"] = g["gflops_per_sample"] / report["roofline_gflops"]
        report["generation"] = g
    if "claims" not in skip:
        report["claims"] = bench_claims([s for s in args.sources.split(",") if s], args.workers)
    atomic_write_json(args.out, report)
    print(render(report))
    print(f"\nreport: {args.out}")
    return 0


def render(r: dict[str, Any]) -> str:
    lines = [
        f"machine: {r['machine']['cpus']} CPUs, torch {r['machine']['torch']}, "
        f"{r['machine']['threads']} threads; torch.mm roofline {r['roofline_gflops']:.1f} GFLOP/s"
        + (
            f" (best of readings {[round(x, 1) for x in r['roofline_readings_gflops']]})"
            if r.get("roofline_readings_gflops")
            else ""
        )
    ]
    g = r.get("generation")
    if g:
        lines += [
            f"generation at {g['shape']} (random init), batch {g['batch']}, {g['new_tokens']} new tokens, "
            f"prompt length {g['prompt_len_mean']:.1f}:",
            f"  injected/plain throughput   replace {g['injected_over_plain_replace']:.3f}   "
            f"additive {g['injected_over_plain_additive']:.3f}"
            + (
                f"   (round-paired median: replace {g['injected_over_plain_paired']['replace']:.3f}, "
                f"additive {g['injected_over_plain_paired']['additive']:.3f})"
                if "injected_over_plain_paired" in g
                else ""
            ),
            f"  our loop / HF generate      {g['ours_over_hf_generate']:.3f}   "
            f"(CPU fast path / plain nn.Linear: {g.get('packed_over_unpacked', float('nan')):.3f})",
            f"  batched / per-sample        {g['batched_over_per_sample']:.2f}x",
            f"  GFLOP/s batched {g['gflops_batched']:.1f} ({g['batched_fraction_of_roofline']:.0%} of roofline), "
            f"per-sample {g['gflops_per_sample']:.1f} ({g['per_sample_fraction_of_roofline']:.0%})",
            f"  matmul floor: the generation's weight matmuls alone (same layers, same shapes"
            f"{', packed' if g['matmul_floor'].get('packed') else ''}) "
            f"take {g['matmul_floor']['total_s']:.2f}s = {g['matmul_floor_over_plain']:.0%} of our "
            f"batched time; decode-shaped matmuls run at {g['matmul_floor']['decode_gflops']:.1f} "
            f"GFLOP/s, prefill-shaped at {g['matmul_floor']['prefill_gflops']:.1f}",
            f"  seconds: {g['seconds']}",
        ]
    for src, c in (r.get("claims") or {}).items():
        lines.append(
            f"claims [{src}]: cold {c['cold']['seconds']:.1f}s, warm {c['warm']['seconds']:.1f}s "
            f"(warm/cold {c['warm_over_cold']:.2f}); "
            f"grid {'-' if c['grid_seconds'] is None else str(c['grid_seconds']) + 's'}; "
            f"artefacts {c['artefacts']}; max computations per artefact {c['max_computations_per_artefact']}; "
            f"warm-run events {c['warm']['events'] or 'none'}"
        )
    return "\n".join(lines)
