from __future__ import annotations

from harness.bench import generation_matmul_flops, render
from harness.events import count_events, record
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

    from harness import bench

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
