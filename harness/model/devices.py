"""Which device a process runs models on, including one GPU per pytest-xdist worker."""

from __future__ import annotations

import os
import re

__all__ = ["resolve_device", "worker_device"]


def worker_device(worker_id: str | None, n_gpus: int) -> str:
    """Device for an xdist worker: ``gw{i}`` -> ``cuda:{i mod n}``; ``cpu`` without GPUs.

    ``worker_id`` is ``None`` or ``"master"`` outside xdist (-> ``cuda:0`` when a GPU exists).
    """
    if n_gpus <= 0:
        return "cpu"
    m = re.fullmatch(r"gw(\d+)", worker_id or "")
    index = int(m.group(1)) if m else 0
    return f"cuda:{index % n_gpus}"


def resolve_device(requested: str = "auto") -> str:
    """``auto`` -> this worker's GPU (``PYTEST_XDIST_WORKER``) or ``cpu``; anything else as given."""
    if requested != "auto":
        return requested
    try:
        import torch

        n = torch.cuda.device_count()
    except ImportError:  # pragma: no cover - torch is a dependency
        n = 0
    return worker_device(os.environ.get("PYTEST_XDIST_WORKER"), n)
