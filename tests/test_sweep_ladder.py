"""The receiver-strength ladder (issue #29): checkpoints saved during training, stored as
float16 safetensors, swept with today's receiver as the unchanged top rung."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from harness.protocol import load_protocol
from harness.spec.sweep import SWEEP_DIR, load_sweep
from tests.helpers import ROOT

LADDER = SWEEP_DIR / "ladder.toml"
RUNGS = ROOT / "harness" / "mini" / "models" / "ladder" / "receiver"


def _dtypes(path: Path) -> set[str]:
    """The tensor dtypes a safetensors file's header declares (read as data, no torch)."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def test_the_ladder_runs_the_weak_rungs_then_todays_receiver_unchanged() -> None:
    sweep = load_sweep(LADDER)
    mini = load_protocol("mini")
    receivers = [p.protocol.resolve_path(p.protocol.models.receiver) for p in sweep.points]
    assert receivers[-1] == mini.resolve_path(mini.models.receiver)  # the shipped weights
    assert all(r.parent == RUNGS for r in receivers[:-1])
    assert [a.x for a in sweep.axes] == [(100.0, 284.0, 700.0, 1413.0, 2000.0, 2905.0, 11573.0)]
    for p in sweep.points:  # only the receiver changes, and the grid the [set] table names
        assert p.protocol.models.sender == mini.models.sender
        assert p.protocol.eval == mini.eval and p.protocol.translator == mini.translator


@pytest.mark.parametrize("rung", sorted(p.name for p in RUNGS.iterdir()) if RUNGS.is_dir() else [])
def test_each_rung_is_a_float16_safetensors_folder_of_the_receiver_shape(rung: str) -> None:
    folder = RUNGS / rung
    weights = folder / "model.safetensors"
    assert _dtypes(weights) == {"F16"}
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert (config["hidden_size"], config["num_hidden_layers"]) == (128, 8)
    assert weights.stat().st_size < 4_000_000  # 1,865,984 parameters x 2 bytes + header


@pytest.mark.slow
def test_save_at_keeps_the_weights_of_each_named_step(tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from harness.mini import train

    cfg = train.TrainConfig(
        which="sender",
        steps=3,
        batch_size=2,
        warmup=1,
        eval_every=10_000,
        ckpt_every=10_000,
        threads=1,
        save_at=(1, 3),
        save_dir=str(tmp_path / "ladder"),
    )
    train.train_model(cfg, out_dir=tmp_path / "final", ckpt_dir=tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ladder").iterdir()) == ["step00001", "step00003"]
    first = load_file(tmp_path / "ladder" / "step00001" / "model.safetensors")
    last = load_file(tmp_path / "ladder" / "step00003" / "model.safetensors")
    final = load_file(tmp_path / "final" / "model.safetensors")
    assert all((last[k] == final[k]).all() for k in final)  # step 3 is the end of the run
    assert any((first[k] != final[k]).any() for k in final)  # step 1 is an earlier model


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--save-at", "100"], "--save-at needs --save-dir"),
        (["--save-at", "1,x", "--save-dir", "d"], "--save-at must be a comma list"),
    ],
)
def test_bad_save_at_flags_fail_in_one_line(argv, needle, capsys) -> None:
    from harness.mini import train

    with pytest.raises(SystemExit) as exc:
        train.main(["--which", "sender", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert needle in err
