"""Capture block outputs at prompt positions: batched, left padded, plain tensors out.

Capture and injection are two passes. The capture pass registers one self-removing forward
hook on the resolved block, stops the forward right after that block (later blocks are not
needed), and returns each prompt's states unpadded in an :class:`Activations` container.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.errors import HarnessError
from harness.model.packing import packed_linears, real_rows_only

__all__ = [
    "Activations",
    "batches",
    "block_output",
    "capture",
    "check_finite",
    "left_pad",
    "packed_linears",
    "real_rows_only",
    "with_block_output",
]


@dataclass(frozen=True)
class Activations:
    """Block outputs of one model at one site, one ``[len_i, dim]`` float32 CPU tensor per prompt."""

    site: str
    states: tuple[torch.Tensor, ...]
    token_ids: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.states)

    @property
    def dim(self) -> int:
        return int(self.states[0].shape[-1])

    @property
    def lengths(self) -> list[int]:
        return [int(s.shape[0]) for s in self.states]

    def concat(self) -> torch.Tensor:
        """All positions of all prompts stacked in order: ``[sum(len_i), dim]``."""
        return torch.cat(list(self.states), dim=0)


def check_finite(
    states: Sequence[torch.Tensor],
    *,
    what: str,
    site: str,
    labels: Sequence[str],
    fix: str = "a weight of the model is NaN/inf or its forward overflows: check the "
    "checkpoint, and run in float32",
) -> None:
    """Raise :class:`HarnessError` naming the first sample whose tensor holds NaN or inf.

    ``what`` names the tensors ("sender activations"), ``site`` where they come from and
    ``labels`` one sample id per tensor.
    """
    for label, x in zip(labels, states, strict=True):
        if not bool(torch.isfinite(x).all()):
            kind = "NaN" if bool(torch.isnan(x).any()) else "inf"
            raise HarnessError(f"{kind} in {what} at {site} for sample {label}", fix)


def left_pad(
    token_ids: Sequence[Sequence[int]], pad_id: int, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), left padded; real positions count from 0."""
    width = max(len(t) for t in token_ids)
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for i, t in enumerate(token_ids):
        if len(t):
            ids[i, width - len(t) :] = torch.as_tensor(list(t), dtype=torch.long)
            mask[i, width - len(t) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids.to(device), mask.to(device), pos.to(device)


def block_output(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a block's output (a tensor in transformers 5, else a tuple)."""
    return output if isinstance(output, torch.Tensor) else output[0]


def with_block_output(output: Any, hidden: torch.Tensor) -> Any:
    """``output`` with its hidden-state tensor replaced, keeping the original structure."""
    if isinstance(output, torch.Tensor):
        return hidden
    return (hidden, *tuple(output[1:]))


class _StopForward(Exception):
    """Raised by the capture hook to skip the blocks after the captured one."""


@contextmanager
def _capture_hook(module: nn.Module, sink: list[torch.Tensor], stop: bool):
    def hook(_mod: nn.Module, _args: Any, output: Any) -> None:
        sink.append(block_output(output).detach())
        if stop:
            raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def batches(
    token_ids: Sequence[Sequence[int]], batch_size: int, *, length_sorted: bool = True
) -> list[list[int]]:
    """Index batches over ``token_ids``: consecutive in length order (stable) when
    ``length_sorted``, else in input order. Capture and generation share this, so a prompt
    sees the same batch-mates and padding in both (bitwise-identical prefills)."""
    order = list(range(len(token_ids)))
    if length_sorted:
        order.sort(key=lambda i: len(token_ids[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def capture(
    model: nn.Module,
    module: nn.Module,
    token_ids: Sequence[Sequence[int]],
    *,
    site: str,
    pad_id: int,
    batch_size: int = 32,
    stop_early: bool = True,
    length_sorted: bool = True,
) -> Activations:
    """Run ``model`` over ``token_ids`` in left-padded batches and keep ``module``'s output.

    Batches are those of :func:`batches` (length-sorted buckets by default), the same ones
    generation uses at the same batch size, so a later generation pass sees bitwise the same
    prefill (which makes self-injection exactly token-identical). States come back in input
    order.
    """
    device = next(model.parameters()).device
    states: list[torch.Tensor | None] = [None] * len(token_ids)
    with torch.inference_mode(), packed_linears(model):
        for idx in batches(token_ids, batch_size, length_sorted=length_sorted):
            batch = [token_ids[i] for i in idx]
            ids, mask, pos = left_pad(batch, pad_id, device)
            sink: list[torch.Tensor] = []
            with (
                _capture_hook(module, sink, stop_early),
                suppress(_StopForward),
                real_rows_only(mask),
            ):
                model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
            if len(sink) != 1:
                raise RuntimeError(f"capture hook fired {len(sink)} times, expected once")
            out = sink[0].float().cpu()
            width = out.shape[1]
            for row, (i, t) in enumerate(zip(idx, batch, strict=True)):
                states[i] = out[row, width - len(t) :].clone()
    return Activations(
        site=site,
        states=tuple(s for s in states if s is not None),
        token_ids=tuple(tuple(t) for t in token_ids),
    )
