"""Capture block outputs at prompt positions: batched, left padded, plain tensors out.

Capture and injection are two passes. The capture pass registers one self-removing forward
hook on the resolved block, stops the forward right after that block (later blocks are not
needed), and returns each prompt's states unpadded in an :class:`Activations` container.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.errors import HarnessError

__all__ = [
    "Activations",
    "batches",
    "block_output",
    "capture",
    "check_finite",
    "left_pad",
    "packed_linears",
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


PACK_ROWS_HINT = 32  # rows per product oneDNN lays the weight out for (a decode step's batch)


def _pointwise_linear_available() -> bool:
    return hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(
        torch.ops.mkldnn, "_reorder_linear_weight"
    )


class _PackedLinear(nn.Module):
    """An inference-only ``nn.Linear`` whose weight lives in oneDNN's own (blocked) layout.

    Where torch has oneDNN's pointwise-linear op (the one ``torch.compile`` uses on CPU), the
    weight is reordered once for products of about ``PACK_ROWS_HINT`` rows and the op takes
    and returns plain dense tensors; otherwise the input is converted to oneDNN's tensor
    type and back around ``mkldnn_linear``, which costs two copies per call."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach()
        b = linear.bias.detach() if linear.bias is not None else w.new_zeros(w.shape[0])
        # plain attributes: the model's state dict is untouched
        self.pointwise = _pointwise_linear_available()
        if self.pointwise:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS_HINT)
            self.bias = b.contiguous()
        else:  # pragma: no cover - torch builds without the op
            self.weight, self.bias = w.to_mkldnn(), b.to_mkldnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise:
            return torch.ops.mkldnn._linear_pointwise(
                x.contiguous(), self.weight, self.bias, "none", [], ""
            )
        lead = x.shape[:-1]  # pragma: no cover - torch builds without the op
        y = torch._C._nn.mkldnn_linear(
            x.reshape(-1, x.shape[-1]).to_mkldnn(), self.weight, self.bias
        )
        return y.to_dense().reshape(*lead, self.out_features)


PACK_MIN_WIDTH = 512  # pack only models at least this wide (small ones gain nothing)


def _pack_wanted(model: nn.Module) -> bool:
    if os.environ.get("HARNESS_PACK_LINEAR", "1") == "0":
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        p = next(model.parameters())
    except StopIteration:
        return False
    width = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)
    return p.device.type == "cpu" and p.dtype == torch.float32 and width >= PACK_MIN_WIDTH


@contextmanager
def packed_linears(model: nn.Module) -> Iterator[int]:
    """Inference on a CPU with the model's ``nn.Linear`` weights prepacked for oneDNN.

    Decoding multiplies a few rows (the batch) by every weight matrix per token; with the
    weights reordered once into oneDNN's blocked layout those products run about 1.5x faster
    on this project's CPU (measured at Pythia-410M shape, 32 rows). The swap is undone on
    exit, so training (the causal translator) and everything else see the plain modules.
    Only for float32 CPU models at least ``PACK_MIN_WIDTH`` wide; ``HARNESS_PACK_LINEAR=0``
    turns it off. Yields the number of swapped layers. Results agree with the plain path to
    float rounding (~1e-6), so capture and generation both run under it: self-injection
    then stays bitwise token-identical.
    """
    if getattr(model, "_harness_packed", False) or not _pack_wanted(model):
        yield 0
        return
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for mod in list(model.modules()):
            for name, child in list(mod.named_children()):
                if type(child) is nn.Linear:
                    setattr(mod, name, _PackedLinear(child))
                    swaps.append((mod, name, child))
        model._harness_packed = True  # nested calls (generation batches) reuse the packing
        yield len(swaps)
    finally:
        for mod, name, child in swaps:
            setattr(mod, name, child)
        model._harness_packed = False


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
            with _capture_hook(module, sink, stop_early), suppress(_StopForward):
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
