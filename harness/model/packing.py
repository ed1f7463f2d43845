"""CPU inference fast path: oneDNN-packed linear layers, fused GELU, real-rows-only prefill.

Everything here is an exact rewrite of what the model computes, swapped in only for the
duration of a capture or generation pass (:func:`packed_linears`) and undone on exit:

- **Packed weights.** Each ``nn.Linear`` becomes oneDNN's pointwise linear (the op
  ``torch.compile`` uses on CPU) with its weight reordered once into oneDNN's blocked layout
  for products of about ``PACK_ROWS_HINT`` rows. The reordered weights are kept per layer
  (weakly, keyed on the weight's storage and version) so a model generating many result files
  packs once, not once per file.
- **Fused GELU.** In a block MLP (the architecture table's
  :class:`~harness.model.arch.MlpKind`) whose activation is exact (erf) GELU, Pythia's, the
  activation runs as its input linear's oneDNN post-op instead of a separate pass over the
  ``[rows, 4 x hidden]`` output (of the table's families only GPT-NeoX has one; Llama, Qwen2
  use SiLU, Gemma tanh GELU, GPT-2 ``Conv1D`` layers, which are not packed at all). Bitwise equal to ``F.gelu`` after the linear (tested; the
  tanh approximation is not bitwise, so it is not fused).
- **Real rows only** (:func:`real_rows_only`). In a left-padded prefill the padding rows are
  up to a quarter of the batch on unsorted prompts; inside this context a packed linear
  multiplies only the real positions and writes zeros at the padding ones (a table MLP keeps its
  wide intermediate compact, real rows only, between its input and output linears). A row's product
  does not depend on which other rows are multiplied with it (tested bitwise), and padding
  positions are masked out of every real position's attention, so real positions come out
  bitwise as before; only the (never read) padding positions change.
- **A heap that keeps freed memory** (:func:`keep_freed_memory`). glibc hands allocations over
  a dynamic threshold straight to ``mmap`` and returns them to the kernel on free, so every
  prefill activation of tens of MB was faulted in afresh, page by page (about 120,000 minor
  faults and 0.2-2.7 s of system time per Pythia-410M batch-32 prefill, measured). Raising
  the thresholds makes the process reuse that memory: the faults drop to zero.
"""

from __future__ import annotations

import ctypes
import os
import platform
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.model.arch import MlpKind, mlp_modules

__all__ = [
    "PACK_MIN_WIDTH",
    "PACK_ROWS_HINT",
    "PackedLinear",
    "keep_freed_memory",
    "pack_wanted",
    "packed_linears",
    "real_rows_only",
]

PACK_ROWS_HINT = 32  # rows per product oneDNN lays the weight out for (a decode step's batch)
PACK_MIN_WIDTH = 512  # pack only models at least this wide (small ones gain nothing)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's ceiling for it on 64-bit; Pythia prefill tensors fit
TRIM_THRESHOLD = -1  # never give the heap's free top back to the kernel (man mallopt)
_heap_tuned: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (process-wide, once); True if applied.

    Sets ``M_MMAP_THRESHOLD`` to 32 MiB (allocations below come from the heap, not fresh
    ``mmap`` regions) and ``M_TRIM_THRESHOLD`` to -1 (freed heap is kept, not returned: a
    finite threshold let the KV cache buffers, 730 MB at Pythia-410M batch 32, go back to
    the kernel at the end of each batch and be faulted in again at the next). The process
    then holds its peak heap until it exits.
    Only on glibc; ``HARNESS_MALLOC_TUNE=0`` leaves malloc alone. Called on the first entry
    into :func:`packed_linears`, i.e. only by processes that run a wide model on the CPU.
    """
    global _heap_tuned
    if _heap_tuned is None:
        _heap_tuned = False
        if os.environ.get("HARNESS_MALLOC_TUNE", "1") != "0" and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):  # pragma: no cover - no mallopt in the process
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _heap_tuned = bool(
                mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
    return _heap_tuned


def _pointwise_linear_available() -> bool:
    return hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(
        torch.ops.mkldnn, "_reorder_linear_weight"
    )


@dataclass(frozen=True)
class _Rows:
    """The real positions of a left-padded ``[B, W]`` batch, as flat row indices."""

    shape: tuple[int, int]
    real: torch.Tensor
    pad: torch.Tensor


_ROWS: ContextVar[_Rows | None] = ContextVar("harness_real_rows", default=None)


@contextmanager
def real_rows_only(mask: torch.Tensor) -> Iterator[None]:
    """Inside: packed linears whose input is ``[B, W, in]`` (the shape of ``mask``, a
    ``[B, W]`` 0/1 attention mask) multiply only the rows where ``mask`` is 1.

    A no-op for a batch without padding, and for models that are not packed (their
    ``nn.Linear`` layers never look at it)."""
    flat = mask.reshape(-1).bool()
    if mask.dim() != 2 or bool(flat.all()):
        yield
        return
    rows = _Rows(
        (int(mask.shape[0]), int(mask.shape[1])),
        flat.nonzero().squeeze(1),
        (~flat).nonzero().squeeze(1),
    )
    token = _ROWS.set(rows)
    try:
        yield
    finally:
        _ROWS.reset(token)


class PackedLinear(nn.Module):
    """An inference-only ``nn.Linear`` whose weight lives in oneDNN's own (blocked) layout,
    optionally followed by a fused GELU (``post="gelu"``, ``algorithm`` "none" (erf) or
    "tanh").

    Where torch has oneDNN's pointwise-linear op, the weight is reordered once for products
    of about ``PACK_ROWS_HINT`` rows and the op takes and returns plain dense tensors;
    otherwise the input is converted to oneDNN's tensor type and back around
    ``mkldnn_linear``, which costs two copies per call (and the GELU runs separately)."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(
        self,
        linear: nn.Linear,
        *,
        post: str = "none",
        algorithm: str = "",
        packed: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.post, self.algorithm = post, algorithm
        self.pointwise = _pointwise_linear_available()
        w = linear.weight.detach()
        b = linear.bias.detach() if linear.bias is not None else w.new_zeros(w.shape[0])
        # plain attributes, not parameters: the model's state dict is untouched
        if packed is not None:
            self.weight, self.bias = packed
        elif self.pointwise:
            self.weight = torch.ops.mkldnn._reorder_linear_weight(w, PACK_ROWS_HINT)
            self.bias = b.contiguous()
        else:  # pragma: no cover - torch builds without the op
            self.weight, self.bias = w.to_mkldnn(), b.to_mkldnn()

    def _product(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise:
            return torch.ops.mkldnn._linear_pointwise(
                x.contiguous(), self.weight, self.bias, self.post, [], self.algorithm
            )
        lead = x.shape[:-1]  # pragma: no cover - torch builds without the op
        y = torch._C._nn.mkldnn_linear(
            x.reshape(-1, x.shape[-1]).to_mkldnn(), self.weight, self.bias
        ).to_dense()
        if self.post == "gelu":
            y = F.gelu(y, approximate=self.algorithm)
        return y.reshape(*lead, self.out_features)

    # Inside real_rows_only, the linears of a table MLP pass its wide intermediate compact
    # ([real rows, 4 x hidden]) instead of scattering it to the padded shape and gathering it
    # back: the input linears keep their output compact, the output one accepts it.
    compact_out = False
    compact_in = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = _ROWS.get()
        if rows is None:
            return self._product(x)
        if self.compact_in and x.dim() == 2 and x.shape[0] == rows.real.numel():
            part = self._product(x)
        elif tuple(x.shape[:-1]) == rows.shape:
            part = self._product(x.reshape(-1, x.shape[-1]).index_select(0, rows.real))
            if self.compact_out:
                return part
        else:
            return self._product(x)
        y = part.new_empty((rows.shape[0] * rows.shape[1], self.out_features))
        y.index_fill_(0, rows.pad, 0.0).index_copy_(0, rows.real, part)
        return y.view(*rows.shape, self.out_features)


# nn.Linear -> (key, (packed weight, bias)); weak keys: a discarded model frees its packing
_PACK_CACHE: weakref.WeakKeyDictionary[
    nn.Linear, tuple[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]]
] = weakref.WeakKeyDictionary()
# models inside packed_linears: nested calls (generation batches) reuse the packing
_PACKED_MODELS: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _packed(linear: nn.Linear, post: str, algorithm: str) -> PackedLinear:
    """The packed twin of ``linear``, reusing its reordered weight while the weight is
    unchanged (same storage, same in-place version)."""
    w, b = linear.weight, linear.bias
    key = (
        w.data_ptr(),
        w._version,
        -1 if b is None else b.data_ptr(),
        -1 if b is None else b._version,
    )
    hit = _PACK_CACHE.get(linear)
    if hit is not None and hit[0] == key:
        return PackedLinear(linear, post=post, algorithm=algorithm, packed=hit[1])
    layer = PackedLinear(linear, post=post, algorithm=algorithm)
    _PACK_CACHE[linear] = (key, (layer.weight, layer.bias))
    return layer


def _gelu_algorithm(act: nn.Module) -> str | None:
    """ "none" or "tanh" when ``act`` computes exactly ``F.gelu`` with that approximation
    (checked bitwise on a probe), else ``None``."""
    probe = torch.linspace(-6.0, 6.0, 1001)
    try:
        with torch.inference_mode():
            out = act(probe)
    except Exception:  # pragma: no cover - an activation that rejects a 1-D tensor
        return None
    for algorithm in ("none", "tanh"):
        if torch.equal(out, F.gelu(probe, approximate=algorithm)):
            return algorithm
    return None


def _fusable_gelu(act: nn.Module | None) -> str | None:
    """ "none" when an MLP's activation is erf GELU, which can run as its input linear's
    oneDNN post-op (bitwise torch's, tested; its tanh GELU is not, so that is not fused)."""
    return "none" if act is not None and _gelu_algorithm(act) == "none" else None


def pack_wanted(model: nn.Module) -> bool:
    """Whether :func:`packed_linears` packs ``model``: a float32 CPU model at least
    ``PACK_MIN_WIDTH`` wide, with oneDNN present and ``HARNESS_PACK_LINEAR`` not ``0``."""
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
    on this project's CPU (measured at Pythia-410M shape, 32 rows). Block MLPs with an exact
    GELU (GPT-NeoX's) get it fused into their input linear. The swap is undone on exit, so training (the causal
    translator) and everything else see the plain modules; hooks on the swapped linears and
    activations do not fire inside. Only for float32 CPU models at least ``PACK_MIN_WIDTH``
    wide; ``HARNESS_PACK_LINEAR=0`` turns it off. Yields the number of swapped linears.
    Results agree with the plain path to float rounding (~1e-6), so capture and generation
    both run under it: self-injection then stays bitwise token-identical.
    """
    if model in _PACKED_MODELS or not pack_wanted(model):
        yield 0
        return
    keep_freed_memory()
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    mlps: dict[int, MlpKind] = {id(m): kind for m, kind in mlp_modules(model)}
    try:
        for mod in list(model.modules()):
            kind = mlps.get(id(mod))
            gelu = _fusable_gelu(getattr(mod, kind.act, None)) if kind is not None else None
            for name, child in list(mod.named_children()):
                if kind is not None and gelu is not None and name == kind.act:
                    setattr(mod, name, nn.Identity())
                    swaps.append((mod, name, child))
                elif type(child) is nn.Linear:
                    fused = kind is not None and gelu is not None and name == kind.fuse_into
                    layer = _packed(child, "gelu" if fused else "none", gelu or "")
                    layer.compact_out = kind is not None and name in kind.inputs
                    layer.compact_in = kind is not None and name == kind.output
                    setattr(mod, name, layer)
                    swaps.append((mod, name, child))
        _PACKED_MODELS.add(model)
        yield sum(type(child) is nn.Linear for _, _, child in swaps)
    finally:
        for mod, name, child in swaps:
            setattr(mod, name, child)
        _PACKED_MODELS.discard(model)
