from __future__ import annotations

import statistics
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.events import count_events, record
from harness.tools.bench import generation_matmul_flops, render
from tests.model_fixtures import tiny_model


def test_matmul_flops_count_blocks_per_processed_token_and_the_head_per_new_token() -> None:
    model = tiny_model()
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    blocks = sum(p.numel() for p in model.parameters() if p.dim() == 2) - emb - head
    # two prompts of 5 and 7 tokens, 4 new tokens each: the blocks see 12 prompt positions +
    # 2 x 3 decode steps; the head runs on 2 x 4 positions (last prompt token + 3 generated)
    assert generation_matmul_flops(model, [5, 7], 4) == 2.0 * (blocks * 18 + head * 8)


def test_events_are_counted_per_artefact(tmp_path, monkeypatch) -> None:
    log = tmp_path / "events.jsonl"
    record("translator", key="a")  # unset: a no-op
    monkeypatch.setenv("HARNESS_EVENTS", str(log))
    for key in ("a", "b", "a"):
        record("translator", key=key)
    record("result_file", key="x.json")
    counts = count_events(log)
    assert counts["translator"] == {"a": 2, "b": 1} and counts["result_file"] == {"x.json": 1}


def test_render_reads_a_report() -> None:
    rep = {"machine": {"cpus": 2, "torch": "2.13", "threads": 2}, "roofline_gflops": 100.0}
    assert "roofline 100.0 GFLOP/s" in render(rep)


def test_the_matmul_floor_times_every_weight_at_prefill_and_decode_shapes(monkeypatch) -> None:
    import torch.nn.functional as F

    from harness.tools import bench

    model = tiny_model()
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    weights = [p for p in model.parameters() if p.dim() == 2 and p is not emb and p is not head]
    rows: list[int] = []
    real = F.linear

    def spy(x, w, *a):
        rows.append(x.shape[0])
        return real(x, w, *a)

    monkeypatch.setattr(F, "linear", spy)
    floor = bench.matmul_floor(model, batch=3, prefill_rows=15, new_tokens=4)
    # warm-up + 2 timed prefill passes at 3 x 5 rows (the head at 3 rows: last position
    # only), warm-up + 3 timed decode passes at 3 rows
    assert sorted(set(rows)) == [3, 15]
    assert rows.count(15) == 3 * len(weights)
    assert rows.count(3) == 3 + 4 * (len(weights) + 1)
    assert floor["total_s"] == floor["prefill_s"] + 3 * floor["decode_step_s"]


def test_each_ab_block_mirrors_so_every_variant_sits_at_the_base_mean_time() -> None:
    from harness.tools.bench import abba_order

    orders = abba_order("plain", ["replace", "additive"], 3)
    assert len(orders) == 3
    for order in orders:
        assert order == ["plain", "replace", "additive", "additive", "replace", "plain"]
        mean = {n: statistics.mean(i for i, x in enumerate(order) if x == n) for n in set(order)}
        assert len(set(mean.values())) == 1


@settings(max_examples=60, deadline=None)
@given(
    work=st.floats(0.5, 2.0),
    drift=st.floats(-0.05, 0.05),
    start=st.floats(0.5, 3.0),
    blocks=st.integers(1, 5),
)
def test_the_ab_ratio_recovers_a_true_cost_under_linear_drift(
    work: float, drift: float, start: float, blocks: int
) -> None:
    """A machine that slows (or speeds up) linearly over the whole run: each run takes
    cost x (start + drift x its position). The block ratio is the true cost ratio."""
    from harness.tools import bench

    costs = {"plain": 1.0, "replace": work, "additive": 1.0}
    clock = iter(range(10_000))
    fake = _FakeWork({n: (lambda n=n: None) for n in costs})

    def timed(fn, repeats):
        return costs[fn.__name__] * (start + drift * next(clock))

    r = _ab_with_clock(bench, fake, blocks, timed)
    got = r["injected_over_plain"]
    assert got["replace"]["median"] == pytest.approx(1.0 / work, rel=1e-9)
    assert got["additive"]["median"] == pytest.approx(1.0, rel=1e-9)
    assert len(got["replace"]["blocks"]) == blocks


def test_one_slow_block_moves_the_median_but_not_out_of_the_interval() -> None:
    from harness.tools.bench import ratio_summary

    r = ratio_summary([0.99, 1.0, 1.01, 0.80, 1.0, 0.995, 1.005, 1.0])
    assert r["median"] == 1.0 and r["min"] == 0.80
    lo, hi = r["ci95"]
    assert 0.99 <= lo <= 1.0 <= hi <= 1.005  # the slow block does not drag the interval down
    assert "ci95" not in ratio_summary([1.0, 0.9, 1.0])  # too few blocks for an interval


class _FakeWork:
    def __init__(self, fns):
        for name, fn in fns.items():
            fn.__name__ = name
        self.variants = fns


def _ab_with_clock(bench, work, blocks, timed):
    with mock.patch.object(bench, "_time", timed):
        return bench.bench_injection_ab(work, blocks)


@pytest.fixture(scope="module")
def small_work():
    from harness.tools.bench import generation_workload

    return generation_workload(batch=4, new_tokens=6, shape="tiny", model=tiny_model(3, layers=3))


def _drain(steps):
    import torch

    with torch.inference_mode():
        it = steps()
        while True:
            try:
                next(it)
            except StopIteration as done:
                return done.value


def test_generations_in_lockstep_give_the_tokens_each_gives_alone(small_work) -> None:
    """Advancing a plain and an injected generation in turns changes neither: the plain one
    is not injected by the other's hook, and each equals its own run through the runner's
    path (generate_tokens) and its step generator drained alone."""
    from harness.tools.bench import lockstep

    for name in ("replace", "additive"):
        outputs: dict = {}
        times = lockstep(small_work, "plain", name, outputs=outputs)
        alone = {n: _drain(small_work.steps[n]) for n in ("plain", name)}
        assert outputs == alone
        if name == "replace":  # (additive at scale 0.01 leaves this tiny model's tokens be)
            assert outputs["plain"] != outputs[name]
        assert all(len(t) == 6 for t in outputs[name])
        for side in ("plain", name):
            assert times[f"{side}_total_s"] == pytest.approx(
                times[f"{side}_prefill_s"] + times[f"{side}_decode_s"]
            )
        assert not [m for m in small_work.model.modules() if m._forward_hooks]


def test_the_step_generators_do_the_work_of_the_timed_whole_runs(small_work) -> None:
    """The lockstep A/B and the whole-run A/B time the same generations."""
    for name in ("plain", "replace", "additive"):
        assert small_work.variants[name]() == _drain(small_work.steps[name])


def test_generation_steps_refuse_to_run_outside_inference_mode(small_work) -> None:
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="inference_mode"):
        next(small_work.steps["plain"]())


def test_the_generation_bench_runs_end_to_end_and_renders(small_work) -> None:
    from harness.tools.bench import bench_generation

    g = bench_generation(
        batch=4,
        new_tokens=4,
        repeats=1,
        shape="tiny",
        ab_blocks=1,
        lockstep_pairs=2,
        model=small_work.model,
    )
    g["batched_fraction_of_roofline"] = g["per_sample_fraction_of_roofline"] = 0.5
    for name in ("replace", "additive"):
        lock = g["injection_lockstep"][name]
        assert len(lock["total"]["blocks"]) == 2 and len(lock["minor_faults"]) == 2
        assert len(g["injection_ab"]["injected_over_plain"][name]["blocks"]) == 1
    text = render(
        {
            "machine": {"cpus": 2, "torch": "x", "threads": 2},
            "roofline_gflops": 1.0,
            "generation": g,
        }
    )
    assert (
        "lockstep" in text and "counterbalanced blocks" in text and "batched / per-sample" in text
    )
