from __future__ import annotations

import pytest

from harness.model.devices import resolve_device, worker_device


@pytest.mark.parametrize(
    ("worker", "gpus", "device"),
    [
        ("gw0", 4, "cuda:0"),
        ("gw3", 4, "cuda:3"),
        ("gw5", 4, "cuda:1"),
        ("gw7", 2, "cuda:1"),
        (None, 2, "cuda:0"),
        ("master", 1, "cuda:0"),
        ("gw2", 0, "cpu"),
    ],
)
def test_each_xdist_worker_takes_its_own_gpu(worker: str | None, gpus: int, device: str) -> None:
    assert worker_device(worker, gpus) == device


def test_auto_resolves_to_cpu_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert resolve_device("auto") == "cuda:1"
    assert resolve_device("cpu") == "cpu"


def _pythia_410m():
    """Pythia-410M's config from the architecture table (the paper's receiver)."""
    from harness.model.arch import named_config

    return named_config("EleutherAI/pythia-410m")


def test_an_automatic_batch_fits_the_memory_it_is_given() -> None:
    from harness.model.devices import auto_batch_size, row_bytes

    cfg = [_pythia_410m()]
    kw = {"n_rows": 396, "prompt_len": 256, "new_tokens": 128, "fallback": 32}
    per_row = row_bytes(cfg[0], prompt_len=256, new_tokens=128)
    # an H200's memory less the two Pythia models: every row of a file in one batch
    assert auto_batch_size(cfg, free_bytes=130 * 2**30, **kw) == 396
    sizes = [auto_batch_size(cfg, free_bytes=g * 2**30, **kw) for g in (1, 2, 4, 8)]
    assert sizes == sorted(sizes) and 1 <= sizes[0] < 396
    for g, size in zip((1, 2, 4, 8), sizes, strict=True):
        assert size * per_row <= 0.7 * g * 2**30 < (size + 1) * per_row or size == 396
    assert auto_batch_size(cfg, free_bytes=per_row // 10, **kw) == 1  # never below one row
    assert auto_batch_size(cfg, free_bytes=None, **kw) == 32  # CPU: the protocol's
    assert auto_batch_size(cfg, free_bytes=None, **{**kw, "n_rows": 5}) == 5


def test_a_row_costs_more_with_longer_prompts_and_more_new_tokens() -> None:
    from harness.model.devices import row_bytes

    cfg = _pythia_410m()
    base = row_bytes(cfg, prompt_len=128, new_tokens=64)
    assert row_bytes(cfg, prompt_len=256, new_tokens=64) > base
    assert row_bytes(cfg, prompt_len=128, new_tokens=128) > base
    # the KV cache alone: 2 x layers x hidden x 192 tokens x 4 bytes (24 x 1024 for 410M)
    assert base > 2 * cfg.num_hidden_layers * cfg.hidden_size * (128 + 64) * 4


def test_free_memory_is_unknown_on_a_cpu() -> None:
    from harness.model.devices import device_free_bytes

    assert device_free_bytes("cpu") is None
