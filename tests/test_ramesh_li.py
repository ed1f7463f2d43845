"""Ramesh & Li's conditions in the runner (harness.run.ramesh_li) on the tiny pair: the
injection changes only the last prompt position, at the receiver's native scale; the layer
search is recorded and its fast scorer equals a full forward; one file per condition."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from harness.analysis.evalset import load_evalset
from harness.analysis.results import ResultSet
from harness.conditions import CONDITIONS, InjectionSpec
from harness.errors import HarnessError
from harness.model.activations import batches, capture, left_pad
from harness.model.injection import PrefillInjection, pad_sources
from harness.model.models import load_pair
from harness.protocol import load_protocol
from harness.run import ramesh_li as R
from harness.run.runner import _Run, run_protocol
from tests.model_fixtures import build_tiny_experiment

RL = ("no_inject", "rl_map_replace", "rl_map_sum", "rl_coords_replace", "rl_coords_mean")


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["Bob", "Ann", "Cy", "Eve", "works", "lives", "is", "in", "Tokyo", "Rome", "Japan"]
    return [
        "Context: " + " ".join(rng.choice(words) for _ in range(rng.randint(4, 9))) + "\nQ: ?\nA:"
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def rl_protocol(tmp_path_factory) -> Path:
    """The tiny experiment with 64 texts for W (the sender is 32 wide) and the rl_* listed."""
    d = tmp_path_factory.mktemp("rl")
    (d / "texts.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in _texts(64)))
    listed = {"translator": {"texts": "texts.jsonl"}, "run": {"extension_conditions": RL[1:]}}
    return build_tiny_experiment(d, seeds=(42,), overrides=listed)


@pytest.fixture(scope="module")
def rl_results(rl_protocol, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rl_out")
    run_protocol(str(rl_protocol), out, conditions=RL, progress=False)
    return out


def _run(protocol: Path, out: Path) -> _Run:
    p = load_protocol(protocol)
    ev = load_evalset(p.eval_path(), p.eval.sha256)
    pair = load_pair(p)
    return _Run(p, out, ev.rows, ev.sha256, pair, device="cpu", batch_size=4, artifact=None,
                train_limit=None, use_cache=True)  # fmt: skip


def test_each_ramesh_li_condition_is_one_deterministic_file_with_its_map_record(
    rl_results,
) -> None:
    rs = ResultSet.from_dirs(rl_results)
    for name in RL[1:]:
        (f,) = rs.runs(name, "fwd")
        assert f.seed is None and f.raw["deterministic"]
        rl = f.raw["ramesh_li"]
        k, j = rl["layer_search"]["chosen"]
        assert f.models["layer_a"] == rl["layer_search"]["sender_sites"][k] == rl["layer_a"]
        assert f.models["layer_b"] == rl["layer_search"]["receiver_sites"][j] == rl["layer_b"]
        assert len(rl["layer_search"]["accuracy"]) == 3  # every sender block ...
        assert {len(row) for row in rl["layer_search"]["accuracy"]} == {6}  # ... x receiver
        assert rl["n_texts"] == 64 and len(rl["texts_sha256"]) == 64
        if name.startswith("rl_map_"):
            assert rl["map"]["method"] == "raw_lstsq"
            for key in (
                "raw_r2",
                "raw_cosine",
                "pred_norm_mean",
                "target_norm_mean",
                "adam_raw_r2",
            ):
                assert isinstance(rl["map"][key], float)
        else:
            assert rl["map"] is None and rl["coordinates"] == 32


def test_the_injection_changes_only_the_last_prompt_position_at_native_scale(
    rl_protocol, rl_results, tmp_path
) -> None:
    """Through the runner's own path: the receiver's final block output over the prompt
    with rl_map_replace equals the clean one at every position but the last; there the
    injected vector is W a, whose norm is of the native norm's order (raw targets)."""
    run = _run(rl_protocol, tmp_path)
    d = run.direction("fwd")
    model = d.receiver.model
    last_block = R.blocks(model)[-1][1]
    clean = capture(model, last_block, d.receiver.ids, site="last", pad_id=d.receiver.pad_id,
                    batch_size=4)  # fmt: skip
    seen: list[torch.Tensor] = []

    def grab(_m, _a, out) -> None:
        h = out if isinstance(out, torch.Tensor) else out[0]
        if h.shape[1] > 1:  # the prefill
            seen.append(h.detach().clone())

    cond = CONDITIONS["rl_map_replace"]
    R._setup(run, d)  # W's texts and the layer search run the receiver too: before the hook
    handle = last_block.register_forward_hook(grab)
    try:
        gen, extras = R.inject_ramesh_li(run, cond, cond.plan.spec(run.p), d, None)
    finally:
        handle.remove()
    order = [i for b in batches(d.receiver.ids, 4) for i in b]
    rows = [h[r] for h in seen for r in range(h.shape[0])]
    assert len(rows) == len(order)
    for i, h in zip(order, rows, strict=True):
        n = len(d.receiver.ids[i])
        mine, ref = h[-n:], clean.states[i]
        torch.testing.assert_close(mine[:-1], ref[:-1], rtol=0, atol=1e-5)
        assert not torch.allclose(mine[-1], ref[-1], atol=1e-3)
    ratio = [t / b for t, b in zip(gen.translated_norm, gen.b_hidden_norm, strict=True)]
    assert all(0.2 < r < 5 for r in ratio), ratio  # the native scale, not unit norm
    assert gen.injected_norm == pytest.approx(gen.translated_norm, rel=1e-5)  # replace: W a
    assert extras.ramesh_li["f"] == "replace"


def test_the_fast_layer_search_scorer_equals_a_full_forward(rl_protocol, tmp_path) -> None:
    run = _run(rl_protocol, tmp_path)
    d = run.direction("fwd")
    r = d.receiver
    ids = r.ids
    gold = [5 + i % 7 for i in range(len(ids))]
    vec = torch.randn(len(ids), r.width, generator=torch.Generator().manual_seed(0)) * 10
    module = R.blocks(r.model)[2][1]
    fast = R._Prefixes(r, ids, 3).scores(module, vec, gold)
    hits, logp = 0.0, 0.0
    spec = InjectionSpec("replace", positions="last")
    with torch.inference_mode():
        for idx in batches(ids, 4):
            t, m, pos = left_pad([ids[i] for i in idx], r.pad_id)
            last = torch.zeros_like(m)
            last[:, -1] = 1
            src = pad_sources([vec[i : i + 1] for i in idx], t.shape[1])
            with PrefillInjection(module, spec, src, last):
                lg = r.model(input_ids=t, attention_mask=m, position_ids=pos).logits
            lsm = torch.log_softmax(lg[:, -1].float(), -1)
            g = torch.tensor([gold[i] for i in idx])
            hits += float((lsm.argmax(-1) == g).sum())
            logp += float(lsm.gather(1, g[:, None]).sum())
    assert fast[0] == hits / len(ids)
    assert fast[1] == pytest.approx(logp / len(ids), abs=1e-4)


def test_too_few_texts_for_w_is_a_one_line_error(rl_protocol, tmp_path) -> None:
    small = tmp_path / "texts.jsonl"
    small.write_text("".join(json.dumps({"text": t}) + "\n" for t in _texts(8)))
    text = rl_protocol.read_text(encoding="utf-8").replace(
        'texts = "texts.jsonl"', f'texts = "{small}"'
    )
    path = rl_protocol.parent / "few.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(HarnessError, match="fewer than the sender's width 32"):
        run_protocol(str(path), tmp_path / "out", conditions=("rl_map_replace",), progress=False)


def test_the_layer_search_reads_back_as_a_table_and_a_heatmap(rl_results, tmp_path) -> None:
    from harness.analysis.layer_search import (
        fig_layer_search,
        layer_search_markdown,
        layer_search_tables,
    )

    tables = layer_search_tables(ResultSet.from_dirs(rl_results))
    assert set(tables) == {"raw_map", "coords"}
    k, j = tables["raw_map"]["chosen"]
    best = max(max(row) for row in tables["raw_map"]["accuracy"])
    assert tables["raw_map"]["accuracy"][k][j] == best  # the chosen pair is a best one
    text = layer_search_markdown(tables)
    assert f"**{100 * best:.1f}**" in text and text.count("| k \\ j |") == 2
    png = fig_layer_search(tables, tmp_path / "fig9.png", "tiny")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_map_texts_the_grid_leaves_ramesh_li_out_and_says_why(
    rl_protocol, tmp_path, caplog
) -> None:
    """A protocol that lists the rl_* conditions but sets no ``[translator] texts`` (the
    paper's pair, offline) still runs its grid: the rl_* files are left out with the reason
    (the runner logs it; the claims skip with it), while naming one explicitly refuses."""
    from harness.spec.jobs import expected, jobs, left_out

    text = rl_protocol.read_text(encoding="utf-8").replace('texts = "texts.jsonl"', 'texts = ""')
    path = rl_protocol.parent / "no_texts.toml"
    path.write_text(text, encoding="utf-8")
    bare, full = load_protocol(path), load_protocol(rl_protocol)
    assert left_out(full) == {}
    assert sorted(left_out(bare)) == sorted(c for c in RL[1:] if CONDITIONS[c].reads_map_texts)
    assert all("[translator] texts" in why for why in left_out(bare).values())
    groups = ("primary", "extension")
    kept = {j.condition for j in jobs(bare, groups)}
    assert kept == {j.condition for j in jobs(full, groups)} - set(left_out(bare))
    assert not set(left_out(bare)) & {j.condition for j in expected(bare, groups).values()}
    with caplog.at_level("INFO", logger="harness.run.runner"):
        run_protocol(str(path), tmp_path / "out", include_strict=False,
                     include_extension=True, limit=2, progress=False)  # fmt: skip
    (line,) = [r.getMessage() for r in caplog.records if "left out:" in r.getMessage()]
    assert all(c in line for c in left_out(bare)) and "[translator] texts" in line
    with pytest.raises(HarnessError, match=r"\[translator\] texts is empty"):
        run_protocol(str(path), tmp_path / "o2", conditions=("rl_map_replace",), progress=False)
