"""``python -m harness bench``: performance ratios, measured side by side in one run.

1. injected / plain generation throughput (replace, additive) at Pythia-410M shape, random
   weights, same batch: the two generations advanced in turns (lockstep), and whole runs in
   counterbalanced blocks; and our loop / Hugging Face ``generate``;
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
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.io import atomic_write_json

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["generation_matmul_flops", "main_bench", "matmul_floor", "mm_roofline"]

ROOT = Path(__file__).resolve().parents[2]


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


def _embeddings(model: PreTrainedModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The weights of ``model``'s input embedding and LM head (one tensor when tied)."""
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert isinstance(emb, torch.Tensor) and isinstance(head, torch.Tensor)
    return emb, head


def generation_matmul_flops(
    model: PreTrainedModel, prompt_lens: Sequence[int], new_tokens: int
) -> float:
    """Useful matmul FLOPs of greedy generation: 2 x (weights that multiply) x tokens.

    Every position of the prompt goes through every block's linear layers once, and so does
    every generated token but the last; the LM head runs once per new token (on the prompt's
    last position, then on each generated token but the last). The input embedding is a
    lookup (not counted) and attention-score FLOPs are ignored (small at these lengths).
    """
    emb, head = _embeddings(model)
    blocks = sum(p.numel() for p in model.parameters() if p.dim() == 2) - emb.numel()
    if head is not emb:
        blocks -= head.numel()
    steps = len(prompt_lens) * max(new_tokens - 1, 0)
    return 2.0 * (
        blocks * (sum(prompt_lens) + steps) + head.numel() * len(prompt_lens) * new_tokens
    )


def matmul_floor(
    model: PreTrainedModel, batch: int, prefill_rows: int, new_tokens: int
) -> dict[str, float]:
    """Seconds the generation's weight matmuls alone take, as the same linear layers.

    The same weights and shapes greedy generation multiplies: one prefill pass at
    ``prefill_rows`` rows (the padded prompt batch, ``batch x width``; or, where generation
    packs the weights and so multiplies only real prompt positions, their count) and
    ``new_tokens - 1`` decode passes at ``batch`` rows, through ``F.linear`` or the same
    packed layers (:func:`harness.model.packing.packed_linears`). This is the
    model's own cost at these shapes on this machine (decode at a few rows is bound by reading
    the weights, not by arithmetic), the ceiling our loop can approach; the square
    ``torch.mm`` roofline is the arithmetic ceiling.
    """
    import torch.nn.functional as F

    from harness.model.packing import PackedLinear, pack_wanted

    emb, head = _embeddings(model)
    weights = [p for p in model.parameters() if p.dim() == 2 and p is not emb and p is not head]
    gen = torch.Generator().manual_seed(0)
    packed = pack_wanted(model)

    def layer(w: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        if not packed:
            return lambda x: F.linear(x, w)
        shell = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        shell.weight = torch.nn.Parameter(w.detach(), requires_grad=False)
        return PackedLinear(shell)

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
    from harness.spec.artifact import find_artifact

    root = find_artifact()
    if root is not None:
        data = json.loads((root / "results/final/h1_no_inject_fwd_deterministic.json").read_text())
        lens = [r["prompt_len_b"] for r in data["per_sample"]]
    else:
        lens = [40 + (i * 7) % 25 for i in range(396)]
    return [lens[i % len(lens)] for i in range(k)]


@dataclass
class GenerationWorkload:
    """The benchmark's generation work at one shape: the model, prompts and timed variants.

    Every variant generates ``new_tokens`` greedily for the same ``batch`` prompts (the paper's
    receiver prompt lengths, random token ids) with the paper's decoding settings.
    """

    shape: str
    batch: int
    new_tokens: int
    model: PreTrainedModel
    lens: list[int]
    variants: dict[str, Callable[[], object]]  # each returns its new tokens
    # name -> a generator of the batch's generation steps (harness.model.generate.generation_steps),
    # plain or with the injection's hook entered at its first step
    steps: dict[str, Callable[[], Iterator[int]]]


def generation_workload(
    *, batch: int, new_tokens: int, shape: str, model: PreTrainedModel | None = None
) -> GenerationWorkload:
    """The work at ``shape`` with random weights (or on ``model`` where given, ``shape`` then
    only labels it): ``batch`` prompts of the paper's lengths, random token ids."""
    from harness.model.activations import left_pad
    from harness.model.generate import (
        GenerationSettings,
        generate_batch,
        generate_tokens,
        generation_steps,
    )
    from harness.model.injection import InjectionSpec, PrefillInjection, pad_sources
    from harness.model.models import load_model, resolve_block

    specs = {"replace": InjectionSpec("replace"), "additive": InjectionSpec("additive", scale=0.01)}
    if model is None:
        model = load_model(shape, init="random", seed=0)
    _, module, _ = resolve_block(model, 0.67)
    gen = torch.Generator().manual_seed(0)
    lens = _prompt_lengths(batch)
    vocab = min(50_000, int(model.config.vocab_size))
    prompts = [torch.randint(10, vocab, (n,), generator=gen).tolist() for n in lens]
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
    # harness.model.packing where it applies; the weights are packed once per model, as in a run,
    # at the first call).
    def plain() -> list[list[int]]:
        return generate_tokens(model, prompts, settings, batch_size=batch)

    def unpacked() -> list[list[int]]:
        return generate_batch(model, prompts, settings)  # the loop without the CPU fast path

    def injected(spec: InjectionSpec) -> Callable[[], list[list[int]]]:
        def factory(idx: list[int], m: torch.Tensor) -> PrefillInjection:
            return PrefillInjection(
                module, spec, pad_sources([srcs[i] for i in idx], m.shape[1]), m
            )

        def run() -> list[list[int]]:
            return generate_tokens(model, prompts, settings, batch_size=batch, injection=factory)

        return run

    def hf() -> object:
        from transformers import GenerationMixin

        assert isinstance(model, GenerationMixin)  # a causal LM (PreTrainedModel lacks generate)
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                repetition_penalty=1.3,
                no_repeat_ngram_size=3,
                pad_token_id=0,
            )

    def per_sample() -> list[list[int]]:
        return generate_tokens(model, prompts, settings, batch_size=1)

    def stepper(spec: InjectionSpec | None) -> Callable[[], Iterator[int]]:
        def run() -> Generator[int, None, list[list[int]]]:
            if spec is None:
                return (yield from generation_steps(model, prompts, settings))
            with PrefillInjection(module, spec, pad_sources(srcs, ids.shape[1]), mask) as hook:
                return (yield from generation_steps(model, prompts, settings, injection=hook))

        return run

    variants = {
        "plain": plain,
        "plain_unpacked": unpacked,
        "replace": injected(specs["replace"]),
        "additive": injected(specs["additive"]),
        "hf_generate": hf,
        "per_sample": per_sample,
    }
    steps = {
        "plain": stepper(None),
        "replace": stepper(specs["replace"]),
        "additive": stepper(specs["additive"]),
    }
    return GenerationWorkload(shape, batch, new_tokens, model, lens, variants, steps)


def abba_order(base: str, others: Sequence[str], blocks: int) -> list[list[str]]:
    """Run orders for a counterbalanced A/B: each block is ``base, *others`` then its mirror.

    ``plain, replace, additive, additive, replace, plain``: every variant sits at the same mean
    position in time as ``base`` within a block, so a slowdown that drifts linearly across
    the block cancels out of each variant's ratio to ``base``.
    """
    one = [base, *others]
    return [one + one[::-1] for _ in range(blocks)]


def ab_ratios(seconds: Sequence[dict[str, list[float]]], base: str, other: str) -> list[float]:
    """Per block, ``base`` time / ``other`` time (each summed over the block's two runs).

    Above 1 means ``other`` is faster; as a throughput ratio it is other / base throughput.
    """
    return [sum(b[base]) / sum(b[other]) for b in seconds]


MIN_BLOCKS_FOR_CI = 8


def ratio_summary(ratios: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Median and range of per-block ratios; from :data:`MIN_BLOCKS_FOR_CI` blocks on, also a
    95% percentile-bootstrap interval of the median (scipy). With fewer, a bootstrap interval
    of a median is little more than the range, so none is given."""
    from scipy.stats import bootstrap

    out: dict[str, Any] = {
        "median": statistics.median(ratios),
        "blocks": [round(x, 4) for x in ratios],
        "min": min(ratios),
    }
    if len(ratios) >= MIN_BLOCKS_FOR_CI:
        ci = bootstrap(
            (list(ratios),),
            statistics.median,
            vectorized=False,
            method="percentile",
            n_resamples=2000,
            rng=seed,
        ).confidence_interval
        out["ci95"] = [float(ci.low), float(ci.high)]
    return out


def bench_injection_ab(
    work: GenerationWorkload, blocks: int, *, on_run: Callable[[str, float], None] | None = None
) -> dict[str, Any]:
    """Injected / plain throughput from ``blocks`` counterbalanced blocks of adjacent runs."""
    names = ["replace", "additive"]
    per_block: list[dict[str, list[float]]] = []
    for order in abba_order("plain", names, blocks):
        block: dict[str, list[float]] = {n: [] for n in ["plain", *names]}
        for name in order:
            secs = _time(work.variants[name], 1)
            block[name].append(secs)
            if on_run is not None:
                on_run(name, secs)
        per_block.append(block)
    return {
        "blocks": blocks,
        "order": abba_order("plain", names, 1)[0],
        "seconds": [{k: [round(x, 3) for x in v] for k, v in b.items()} for b in per_block],
        # throughput ratio injected / plain = plain time / injected time
        "injected_over_plain": {n: ratio_summary(ab_ratios(per_block, "plain", n)) for n in names},
    }


def lockstep(
    work: GenerationWorkload,
    base: str,
    other: str,
    *,
    outputs: dict[str, list[list[int]]] | None = None,
) -> dict[str, float]:
    """Run two generations of the same batch in turns, one model forward each, timing each.

    The prefills go first (``base``, then ``other``: an injection's hook must not be alive
    during the plain prefill), then the decode steps alternate which of the two goes first.
    A slow spell of the shared machine lasting seconds then lands on both alike, where
    whole runs 17 s apart can differ by 5-10%. Returns each side's prefill, decode and total
    seconds (and, into ``outputs``, each side's new tokens). While ``other``'s injection
    context is open, ``base``'s decode forwards also pass through its hook's do-nothing
    branch (a few microseconds per step).
    """
    from harness.model.packing import packed_linears

    live = {base: work.steps[base](), other: work.steps[other]()}
    times: dict[str, list[float]] = {base: [], other: []}
    faults = _minor_faults()
    with packed_linears(work.model), torch.inference_mode():
        step = 0
        while live:
            order = [base, other] if step % 2 == 0 else [other, base]
            for name in order:
                if name not in live:
                    continue
                t0 = time.perf_counter()
                try:
                    next(live[name])
                except StopIteration as done:
                    del live[name]
                    if outputs is not None:
                        outputs[name] = done.value
                times[name].append(time.perf_counter() - t0)
            step += 1
    return {
        **{
            f"{name}_{part}": value
            for name, ts in times.items()
            for part, value in (
                ("prefill_s", ts[0]),
                ("decode_s", sum(ts[1:])),
                ("total_s", sum(ts)),
            )
        },
        # first-touch page faults: thousands here mean the heap grew during the timed run
        "minor_faults": float(_minor_faults() - faults),
    }


def _minor_faults() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def bench_injection_lockstep(work: GenerationWorkload, pairs: int) -> dict[str, Any]:
    """Injected / plain throughput from ``pairs`` :func:`lockstep` runs per injection mode."""
    out: dict[str, Any] = {"pairs": pairs}
    for name in ("replace", "additive"):
        runs = [lockstep(work, "plain", name) for _ in range(pairs)]
        out[name] = {
            # throughput ratio injected / plain = plain seconds / injected seconds
            "total": ratio_summary([r["plain_total_s"] / r[f"{name}_total_s"] for r in runs]),
            "prefill": statistics.median(
                r["plain_prefill_s"] / r[f"{name}_prefill_s"] for r in runs
            ),
            "decode": statistics.median(r["plain_decode_s"] / r[f"{name}_decode_s"] for r in runs),
            "seconds": [{k: round(v, 3) for k, v in r.items() if k.endswith("_s")} for r in runs],
            "minor_faults": [int(r["minor_faults"]) for r in runs],
        }
    return out


def bench_generation(
    *,
    batch: int,
    new_tokens: int,
    repeats: int,
    shape: str,
    ab_blocks: int = 2,
    lockstep_pairs: int = 3,
    model: PreTrainedModel | None = None,
) -> dict[str, Any]:
    work = generation_workload(batch=batch, new_tokens=new_tokens, shape=shape, model=model)
    model, lens, v = work.model, work.lens, work.variants
    # Warm-up: kernels, packed weights, and the heap at its peak (two generations alive, one
    # injected). A variant's first run otherwise pays first-touch page faults: 212k of them
    # and +1.1 s on the injected prefill of the first lockstep run at Pythia-410M shape.
    v["plain"]()
    lockstep(work, "plain", "replace")
    # The injection's cost, two ways: whole runs in counterbalanced blocks (the throughput
    # ratio as such), and the same generations advanced in turns (lockstep; tighter).
    ab = bench_injection_ab(work, ab_blocks) if ab_blocks else None
    locked = bench_injection_lockstep(work, lockstep_pairs) if lockstep_pairs else None
    # The other comparisons: interleaved rounds, each in a rotated order, best time per
    # variant: a slow spell on a shared machine then hits every variant alike instead of
    # skewing one ratio.
    names = ["plain", "plain_unpacked", "hf_generate"]
    rounds: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            rounds[name].append(_time(v[name], 1))
    t = {name: min(times) for name, times in rounds.items()}
    t["per_sample"] = _time(v["per_sample"], 1)
    flops = generation_matmul_flops(model, lens, new_tokens)
    from harness.model.packing import pack_wanted

    # packed models multiply only the real prompt positions at the prefill (real_rows_only)
    rows = sum(lens) if pack_wanted(model) else batch * max(lens)
    floor = matmul_floor(model, batch, rows, new_tokens)
    return {
        "shape": shape,
        "batch": batch,
        "new_tokens": new_tokens,
        "prompt_len_mean": sum(lens) / len(lens),
        "seconds": {k: round(x, 3) for k, x in t.items()},
        "injection_ab": ab,
        "injection_lockstep": locked,
        "rounds_seconds": {k: [round(x, 3) for x in vals] for k, vals in rounds.items()},
        "ours_over_hf_generate": t["hf_generate"] / t["plain"],
        "packed_over_unpacked": t["plain_unpacked"] / t["plain"],
        "batched_over_per_sample": t["per_sample"] / t["plain"],
        "gflops_batched": flops / t["plain"] / 1e9,
        "gflops_per_sample": flops / t["per_sample"] / 1e9,
        "matmul_floor": {k: round(x, 4) for k, x in floor.items()},
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
            runs: dict[str, dict[str, Any]] = {}
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

    from harness.text import ArgumentParser

    p = ArgumentParser(prog="python -m harness bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="out/bench.json")
    p.add_argument("--shape", default="EleutherAI/pythia-410m", help="random-init architecture")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument(
        "--repeats", type=int, default=2, help="interleaved timing rounds (best per variant)"
    )
    p.add_argument(
        "--ab-blocks",
        type=int,
        default=2,
        help="counterbalanced blocks of whole plain/injected runs (0: skip)",
    )
    p.add_argument(
        "--lockstep-pairs",
        type=int,
        default=3,
        help="lockstep plain/injected runs per injection mode (0: skip)",
    )
    p.add_argument("--sources", default="paper,mini", help="claims sources to time cold vs warm")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--skip", default="", help="comma list of parts to skip: generation,claims")
    args = p.parse_args(argv)
    from harness.errors import report_errors

    return report_errors(lambda: _bench(args))


def _bench(args: Any) -> int:
    """Run the parts ``args`` asks for; the output path and numbers are checked first."""
    from harness.errors import HarnessError
    from harness.io import check_output_file
    from harness.text import printable

    check_output_file(args.out, "--out")  # before minutes of timing, not after
    bounds = {"batch": (1, 4096), "new_tokens": (1, 4096), "repeats": (1, 4096),
              "workers": (1, 4096), "ab_blocks": (0, 1000), "lockstep_pairs": (0, 1000)}  # fmt: skip
    for name, (lo, hi) in bounds.items():
        value = getattr(args, name)
        if not lo <= value <= hi:
            raise HarnessError(f"--{name.replace('_', '-')} {value}: must be in {lo} .. {hi}")
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
            batch=args.batch,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
            shape=args.shape,
            ab_blocks=args.ab_blocks,
            lockstep_pairs=args.lockstep_pairs,
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
    print(printable(render(report), keep_newlines=True))
    print(printable(f"\nreport: {args.out}", keep_newlines=True))
    return 0


def _spread(x: dict[str, Any]) -> str:
    """A :func:`ratio_summary` as ``median [min, max]`` (and its interval where there is one)."""
    ci = f"   95% CI {x['ci95'][0]:.3f}-{x['ci95'][1]:.3f}" if "ci95" in x else ""
    return f"{x['median']:.3f} [{min(x['blocks']):.3f}, {max(x['blocks']):.3f}]{ci}"


def _render_injection(g: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    lock = g.get("injection_lockstep")
    if lock:
        lines.append(
            f"  injected/plain throughput, lockstep (the two generations in turns, one forward "
            f"each), median of {lock['pairs']} runs [min, max]:"
        )
        lines += [
            f"    {n:8s} {_spread(lock[n]['total'])}"
            f"   prefill {lock[n]['prefill']:.3f}, decode {lock[n]['decode']:.3f}"
            for n in ("replace", "additive")
        ]
    ab = g.get("injection_ab")
    if ab:
        lines.append(
            f"  injected/plain throughput, whole runs in {ab['blocks']} counterbalanced blocks "
            f"({', '.join(ab['order'])}), median [min, max]:"
        )
        lines += [
            f"    {n:8s} {_spread(ab['injected_over_plain'][n])}" for n in ("replace", "additive")
        ]
    return lines


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
            *_render_injection(g),
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
