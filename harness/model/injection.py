"""Prefill-only injection: a self-removing forward hook on one resolved receiver block.

The hook acts on the first forward after it is entered (the prompt prefill) and on the
forward after each :meth:`PrefillInjection.rearm` (generation without a KV cache recomputes
the prompt every step), and only on the prompt's real positions: left padding and generated
positions pass through untouched. Any other forward that is longer than one token is an
error (an unexpected second prefill); on exit the hook is removed (``finally``) and a clean
exit asserts it fired exactly once per armed forward.

Modes (``h`` the native block output, ``s`` the source vectors at the same positions):
``replace`` h <- s; ``scale_corrected`` h <- alpha * normalize(s) * ||h|| + (1 - alpha) * h;
``additive`` h <- h + scale * s; ``mean`` h <- (h + s) / 2. All work is tensor ops over
the whole batch. A spec with ``positions = "last"`` is given a mask holding only each
prompt's last position (left padding puts it in the last column), so it changes that
position alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from harness.conditions import InjectionSpec
from harness.errors import HarnessError
from harness.model.activations import block_output, with_block_output

__all__ = [
    "InjectionSpec",
    "PrefillInjection",
    "apply_injection",
    "length_buckets",
    "pad_sources",
    "random_directions",
    "scale_correct",
    "shuffle_donors",
]

_EPS = 1e-12


def scale_correct(source: torch.Tensor, native: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha * normalize(source) * ||native|| + (1 - alpha) * native`` per position."""
    unit = source / source.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    scaled = unit * native.norm(dim=-1, keepdim=True)
    if alpha == 1.0:
        return scaled
    return alpha * scaled + (1.0 - alpha) * native


def apply_injection(
    spec: InjectionSpec, native: torch.Tensor, source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(new hidden states, the vectors whose norm is reported as "injected").

    For additive the reported vector is the added one (``scale * s``); otherwise the new
    hidden state itself.
    """
    source = source.to(native.dtype)
    if spec.mode == "replace":
        new = source.expand_as(native)
        return new, new
    if spec.mode == "scale_corrected":
        new = scale_correct(source.expand_as(native), native, spec.alpha)
        return new, new
    if spec.mode == "additive":
        added = spec.scale * source
        return native + added, added.expand_as(native)
    if spec.mode == "mean":
        new = (native + source.expand_as(native)) / 2
        return new, new
    raise HarnessError(f"unknown injection mode {spec.mode!r}")


def pad_sources(
    sources: Sequence[torch.Tensor], width: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Left-pad per-prompt source vectors ``[len_i, d]`` to ``[B, width, d]`` (zeros on pads)."""
    dim = sources[0].shape[-1]
    out = torch.zeros((len(sources), width, dim), dtype=torch.float32)
    for i, s in enumerate(sources):
        s = s.float()
        if s.shape[0] > width:
            raise HarnessError(f"source of {s.shape[0]} positions exceeds the prompt ({width})")
        out[i, width - s.shape[0] :] = s
    return out.to(device)


class PrefillInjection:
    """Context manager: inject ``source`` into ``module``'s output on the prompt prefill.

    ``source``: ``[B, L, d]`` left padded like the prompt batch (``L`` = padded prompt width);
    ``mask``: ``[B, L]`` with 1 on real prompt positions. After a fire, ``stats`` holds per
    prompt the mean L2 norm over real positions of the native states (``b_hidden_norm``) and
    of the injected vectors (``injected_norm``), as float lists.
    """

    def __init__(
        self,
        module: nn.Module,
        spec: InjectionSpec,
        source: torch.Tensor,
        mask: torch.Tensor,
    ) -> None:
        if source.shape[:2] != mask.shape:
            raise HarnessError(
                f"injection source {tuple(source.shape)} does not match the mask {tuple(mask.shape)}"
            )
        self.module = module
        self.spec = spec
        self.source = source
        self.mask = mask.bool()
        self.width = int(mask.shape[1])
        self.fired = 0
        self.armed = 0
        self._pending = False
        self.stats: dict[str, list[float]] = {}
        self._handle: Any = None

    def rearm(self) -> None:
        """Expect one more full-prompt forward (generation without a KV cache)."""
        if self._pending:
            raise HarnessError("injection re-armed before the previous forward fired")
        self._pending = True
        self.armed += 1

    def _hook(self, _mod: nn.Module, _args: Any, output: Any) -> Any:
        hidden = block_output(output)
        if not self._pending:
            if hidden.shape[1] > 1:
                raise HarnessError(
                    "injection hook saw a second multi-token forward (an unexpected prefill)",
                    "generate with a KV cache, or re-arm the hook before each full forward",
                )
            return None  # a generated token: never touched
        if hidden.shape[1] < self.width or hidden.shape[0] != self.mask.shape[0]:
            raise HarnessError(
                f"injection expected a prompt batch of shape {tuple(self.mask.shape)}, "
                f"got {tuple(hidden.shape[:2])}"
            )
        prompt = hidden[:, : self.width]
        src = self.source.to(device=prompt.device)
        new, injected = apply_injection(self.spec, prompt, src)
        keep = self.mask.to(prompt.device).unsqueeze(-1)
        new = torch.where(keep, new, prompt)
        if self.fired == 0:
            self._record(prompt, injected)
        self.fired += 1
        self._pending = False
        if hidden.shape[1] > self.width:
            new = torch.cat([new, hidden[:, self.width :]], dim=1)
        return with_block_output(output, new)

    def _record(self, native: torch.Tensor, injected: torch.Tensor) -> None:
        m = self.mask.to(native.device).to(torch.float32)
        count = m.sum(1).clamp_min(1.0)
        zero = torch.zeros((), dtype=torch.float32, device=native.device)

        def mean_norm(t: torch.Tensor) -> list[float]:
            norms = torch.where(m.bool(), t.float().norm(dim=-1), zero)
            return (norms.sum(1) / count).cpu().tolist()

        self.stats = {"b_hidden_norm": mean_norm(native), "injected_norm": mean_norm(injected)}

    def __enter__(self) -> PrefillInjection:
        self.fired = 0
        self.armed = 0
        self._pending = False
        self.rearm()
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if exc_type is None and (self.fired != self.armed or self.fired == 0):
            raise HarnessError(
                f"injection hook fired {self.fired} time(s) for {self.armed} prefill(s)",
                "the hooked module was not run on the prompt; check the resolved layer",
            )


def length_buckets(lengths: Sequence[int]) -> dict[int, list[int]]:
    """Sample indices grouped by prompt length (in tokens), lengths ascending."""
    buckets: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        buckets.setdefault(int(n), []).append(i)
    return dict(sorted(buckets.items()))


def _derangement(k: int, gen: torch.Generator) -> list[int]:
    """A uniformly random permutation of ``range(k)`` with no fixed point (``k >= 2``)."""
    while True:
        perm = torch.randperm(k, generator=gen).tolist()
        if all(p != i for i, p in enumerate(perm)):
            return perm


def shuffle_donors(
    lengths: Sequence[int], seed: int, *, strict: bool
) -> tuple[list[int | None], int]:
    """Donor index per sample for the shuffled control, and the singleton count.

    Within each prompt-length bucket the donors are a random derangement drawn from a
    generator seeded with ``seed`` (buckets in ascending length, so the full-n and strict
    controls pair identically). A singleton bucket cannot be deranged: full-n falls back to
    the sample itself, strict drops it (``None``). The count is the number of singletons.
    """
    gen = torch.Generator().manual_seed(seed)
    donors: list[int | None] = [None] * len(lengths)
    singletons = 0
    for members in length_buckets(lengths).values():
        if len(members) == 1:
            singletons += 1
            donors[members[0]] = None if strict else members[0]
            continue
        perm = _derangement(len(members), gen)
        for i, p in enumerate(perm):
            donors[members[i]] = members[p]
    return donors, singletons


def random_directions(lengths: Sequence[int], dim: int, seed: int) -> list[torch.Tensor]:
    """Gaussian vectors ``[len_i, dim]`` per sample, in sample order, from one seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(int(n), dim, generator=gen) for n in lengths]
