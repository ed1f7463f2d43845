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
