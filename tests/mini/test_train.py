"""The training loop's data and schedule: batches by step, worker-independent, time-sized."""

from __future__ import annotations

import pytest

from harness.mini import train


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from harness.mini.tokenizer_build import TOKENIZER_DIR

    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def _same(a, b) -> bool:
    return all(x.shape == y.shape and bool((x == y).all()) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_worker_built_batches_equal_in_process_batches_across_a_level_change(tok):
    cfg = train.TrainConfig(batch_size=8, copy_every=3, workers=2)
    local = train.BatchSource(tok, train.TrainConfig(batch_size=8, copy_every=3))
    plan = [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (5, 4)]  # level changes mid-prefetch
    with train.BatchSource(tok, cfg, window=4) as pooled:
        for step, level in plan:
            assert _same(pooled.get(step, level), local.get(step, level)), (step, level)
    ids, _att, ans = local.get(2, 1)  # a relay-sender ("Key facts:") step: half batch
    assert ids.shape[0] == 4 and ans.any(1).all()


def test_a_batch_depends_on_the_step_and_level_not_on_call_order(tok):
    src = train.BatchSource(tok, train.TrainConfig(batch_size=4))
    first = src.get(7, 2)
    src.get(3, 1)
    assert _same(src.get(7, 2), first)
    assert not _same(src.get(8, 2), first)


def test_zero_steps_without_a_time_budget_is_refused():
    with pytest.raises(ValueError, match="--minutes"):
        train.train_model(train.TrainConfig(steps=0, minutes=0.0))


@pytest.mark.slow
def test_zero_steps_sizes_the_schedule_to_the_time_budget(tmp_path):
    cfg = train.TrainConfig(
        which="sender",
        steps=0,
        minutes=0.1,
        batch_size=4,
        warmup=12,
        eval_every=10_000,
        ckpt_every=10_000,
        threads=1,
    )
    out = train.train_model(cfg, out_dir=tmp_path / "sender", ckpt_dir=tmp_path / "ckpt")
    assert cfg.steps > cfg.warmup  # fixed after the warm-up from the measured rate
    assert out["steps"] <= cfg.steps
    assert (tmp_path / "sender" / "model.safetensors").is_file()
    import torch

    state = torch.load(tmp_path / "ckpt" / "sender.pt", weights_only=True)
    assert state["cfg"]["steps"] == cfg.steps  # recorded: --steps N reproduces the run


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["--steps", "0"], "--minutes"), (["--workers", "-1"], "--workers must be 0")],
)
def test_bad_training_flags_fail_in_one_line(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--which", "sender", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert needle in err and err.startswith("harness.mini.train: error:")
