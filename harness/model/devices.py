"""Which device a process runs models on, including one GPU per pytest-xdist worker."""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = [
    "auto_batch_size",
    "check_device",
    "check_settings",
    "check_threads",
    "device_free_bytes",
    "resolve_device",
    "row_bytes",
    "worker_device",
]


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


def check_device(device: str, option: str = "--device") -> None:
    """Refuse, before any work, a device this machine cannot run models on (one line).

    ``cpu``, ``cuda[:N]`` for a visible GPU, and ``mps`` where the MPS backend is present;
    ``meta`` holds shapes without data, so nothing can be generated on it."""
    from harness.errors import HarnessError

    try:
        import torch

        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise HarnessError(f"unknown device {device!r}", "use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(
                f"{option} {device} requested but CUDA is not available", "use --device cpu"
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise HarnessError(
                f"{option} {device}: only {n} CUDA device(s) visible", f"use cuda:0 .. cuda:{n - 1}"
            )
        return
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise HarnessError(f"{option} {device}: MPS is not available here", "use --device cpu")
        return
    if dev.type == "meta":
        raise HarnessError(
            f"{option} meta holds no weights, so nothing can run on it", "use --device cpu or cuda"
        )
    raise HarnessError(f"{option} {device}: unsupported device type", "use cpu, cuda or cuda:N")


def check_threads(threads: int | None, option: str = "--threads") -> None:
    """Refuse a thread count below 1 or above this machine's CPU count (one line)."""
    from harness.errors import HarnessError

    if threads is None:
        return
    cpus = os.cpu_count() or 1
    if not 1 <= threads <= cpus:
        raise HarnessError(
            f"{option} {threads}: this machine has {cpus} CPU(s)", f"use a value in 1 .. {cpus}"
        )


def check_settings(device: str, threads: int | None) -> None:
    """The preamble of every command that runs models: refuse, before any work, a
    ``--device`` or ``--threads`` this machine cannot honour (:func:`check_device`,
    :func:`check_threads`)."""
    check_device(device)
    check_threads(threads)


def device_free_bytes(device: str) -> int | None:
    """Free memory of a CUDA device in bytes (``torch.cuda.mem_get_info``); ``None`` on CPU."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(dev)
    return int(free)


def row_bytes(config: Any, *, prompt_len: int, new_tokens: int, dtype_bytes: int = 4) -> int:
    """A conservative estimate of one generated row's peak memory in bytes (weights aside).

    The KV cache over prompt and new tokens (2 x layers x hidden x tokens), the prefill's
    transients (eager attention scores heads x L^2 in float32, about 16 hidden-wide float32
    tensors per position for the MLP, residual and the injection's source and mask), and the
    last position's logits twice (the repetition penalty copies them). ``config``: a Hugging
    Face model config (``num_hidden_layers``, ``hidden_size``, ``num_attention_heads``,
    ``vocab_size``)."""
    layers, hidden = int(config.num_hidden_layers), int(config.hidden_size)
    heads, vocab = int(config.num_attention_heads), int(config.vocab_size)
    kv = 2 * layers * hidden * (prompt_len + new_tokens) * dtype_bytes
    prefill = heads * prompt_len * prompt_len * 4 + 16 * hidden * prompt_len * 4
    return kv + prefill + 2 * vocab * 4


def auto_batch_size(
    configs: list[Any],
    *,
    n_rows: int,
    prompt_len: int,
    new_tokens: int,
    free_bytes: int | None,
    fallback: int,
    headroom: float = 0.7,
) -> int:
    """The largest generation batch (at most ``n_rows``, at least 1) whose estimated memory
    (:func:`row_bytes` of the largest model in ``configs``) fits ``headroom`` of
    ``free_bytes``. Without a memory figure (CPU) it is ``fallback``, the protocol's batch:
    on a CPU a larger batch only adds padding, so nothing is gained."""
    if free_bytes is None:
        return max(1, min(fallback, n_rows))
    per_row = max(row_bytes(c, prompt_len=prompt_len, new_tokens=new_tokens) for c in configs)
    return max(1, min(n_rows, int(headroom * free_bytes) // per_row))
