"""The architecture table: what the harness needs to know about each supported model family.

One entry per family, found by ``config.model_type`` in :func:`find_arch` (the only place
that detects a family). An entry gives

- the **block list** (``gpt_neox.layers``, ``transformer.h``, ``model.layers``): where
  "the output of block j" lives, for :func:`harness.model.models.resolve_block`;
- how to **run the blocks above j** (:func:`blocks_above`, :func:`only_blocks`): the model's
  own forward with ``inputs_embeds`` = block j's output and its block list cut to the blocks
  above; modules whose output the forward adds to ``inputs_embeds`` (GPT-2's learned position
  embedding) are silenced inside, so the cut forward gives the full forward's logits;
- the **MLP kind** the CPU fast path uses (:class:`MlpKind`, read by
  :mod:`harness.model.packing`): which linears read the block input and which reads the
  intermediate (kept compact between them on real rows), and which linear's output goes
  straight into the activation (where an exact-GELU activation is fused); GPT-2's MLP is
  made of ``Conv1D`` layers, not ``nn.Linear``, so it has none;
- **random-init configs** (:func:`make_config`, :data:`NAMED_CONFIGS`): the family's
  structural defaults plus a shape, so a random-init run builds an architecture without the
  hub; the paper's Pythia models are named configs.

Adding a family is one entry in :data:`ARCHS` (see ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from harness.errors import HarnessError

__all__ = [
    "ARCHS",
    "NAMED_CONFIGS",
    "Arch",
    "MlpKind",
    "arch_of",
    "block_list",
    "blocks_above",
    "find_arch",
    "make_config",
    "mlp_modules",
    "named_config",
    "only_blocks",
]


@dataclass(frozen=True)
class MlpKind:
    """An MLP of the form ``output(act(fuse_into(x)) [* other input(x)])``.

    ``cls``: the exact module class (dotted path; a subclass may compute something else, so it
    is never matched). ``inputs``: the linears that read the block input (their outputs stay
    compact on real rows); ``output``: the linear that reads the intermediate; ``act``: the
    activation's attribute; ``fuse_into``: the input linear whose output is the activation's
    only input (an exact-GELU activation can run as its post-op)."""

    cls: str
    inputs: tuple[str, ...]
    output: str
    act: str
    fuse_into: str


@dataclass(frozen=True)
class Arch:
    """One model family (see the module docstring for what each fact is used for)."""

    model_type: str  # config.model_type, the detection key
    name: str  # how error messages and docs name the family
    config_class: str  # the transformers config class
    model_class: str  # the transformers causal-LM class
    base: str  # attribute of the causal LM holding the base model
    blocks: str  # attribute of the base model holding the block list
    mlp: MlpKind | None  # the MLP layout for packing (None: linears packed one by one)
    mlp_attr: str = "mlp"  # attribute of a block holding its MLP
    added_to_embeds: tuple[str, ...] = ()  # base-model modules added to inputs_embeds
    shape_names: dict[str, str] = field(default_factory=dict)  # generic -> config kwarg
    head_dim: bool = False  # the config takes head_dim and num_key_value_heads (defaulted)
    defaults: dict[str, Any] = field(default_factory=dict)  # random-init structural facts

    @property
    def block_path(self) -> str:
        """Module-name prefix of the blocks (``gpt_neox.layers``): block j is ``PATH.j``."""
        return f"{self.base}.{self.blocks}"


_GATED = ("gate_proj", "up_proj")

ARCHS: dict[str, Arch] = {
    a.model_type: a
    for a in (
        Arch(
            "gpt_neox",
            "GPT-NeoX",
            "GPTNeoXConfig",
            "GPTNeoXForCausalLM",
            "gpt_neox",
            "layers",
            MlpKind(
                "transformers.models.gpt_neox.modeling_gpt_neox.GPTNeoXMLP",
                ("dense_h_to_4h",),
                "dense_4h_to_h",
                "act",
                "dense_h_to_4h",
            ),
            # Pythia's structure: parallel residual, rotary on a quarter of each head
            defaults={
                "rotary_pct": 0.25,
                "rotary_emb_base": 10000,
                "use_parallel_residual": True,
                "layer_norm_eps": 1e-5,
                "hidden_act": "gelu",
                "tie_word_embeddings": False,
            },
        ),
        Arch(
            "gpt2",
            "GPT-2",
            "GPT2Config",
            "GPT2LMHeadModel",
            "transformer",
            "h",
            None,  # GPT2MLP is two Conv1D layers: nothing to pack or fuse
            added_to_embeds=("wpe",),
            shape_names={
                "hidden_size": "n_embd",
                "num_hidden_layers": "n_layer",
                "num_attention_heads": "n_head",
                "intermediate_size": "n_inner",
                "max_position_embeddings": "n_positions",
            },
        ),
        Arch(
            "llama",
            "Llama",
            "LlamaConfig",
            "LlamaForCausalLM",
            "model",
            "layers",
            MlpKind(
                "transformers.models.llama.modeling_llama.LlamaMLP",
                _GATED,
                "down_proj",
                "act_fn",
                "gate_proj",
            ),
            head_dim=True,
        ),
        Arch(
            "qwen2",
            "Qwen2",
            "Qwen2Config",
            "Qwen2ForCausalLM",
            "model",
            "layers",
            MlpKind(
                "transformers.models.qwen2.modeling_qwen2.Qwen2MLP",
                _GATED,
                "down_proj",
                "act_fn",
                "gate_proj",
            ),
            head_dim=True,
        ),
        Arch(
            "gemma",
            "Gemma",
            "GemmaConfig",
            "GemmaForCausalLM",
            "model",
            "layers",
            MlpKind(
                "transformers.models.gemma.modeling_gemma.GemmaMLP",
                _GATED,
                "down_proj",
                "act_fn",
                "gate_proj",
            ),
            head_dim=True,
        ),
    )
}

# The paper's models (the published Pythia configs), so that a random-init run builds exactly
# the paper's shapes without the hub: name -> (model_type, config kwargs beyond the family's).
_PYTHIA_COMMON: dict[str, Any] = {
    "vocab_size": 50304,
    "max_position_embeddings": 2048,
    "bos_token_id": 0,
    "eos_token_id": 0,
}
NAMED_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "EleutherAI/pythia-160m": (
        "gpt_neox",
        {
            **_PYTHIA_COMMON,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
        },
    ),
    "EleutherAI/pythia-410m": (
        "gpt_neox",
        {
            **_PYTHIA_COMMON,
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
        },
    ),
}


def _supported() -> str:
    return ", ".join(f"{a.model_type} ({a.name})" for a in ARCHS.values())


def _model_type(obj: Any) -> str | None:
    config = getattr(obj, "config", None) if isinstance(obj, nn.Module) else obj
    mt = getattr(config, "model_type", None)
    return mt if isinstance(mt, str) and mt else None


def find_arch(obj: Any) -> Arch | None:
    """The table entry of a model or config, by ``config.model_type``; None if not in it."""
    mt = _model_type(obj)
    return ARCHS.get(mt) if mt is not None else None


def arch_of(obj: Any) -> Arch:
    """The table entry of a model or config; an unsupported family is one HarnessError."""
    arch = find_arch(obj)
    if arch is not None:
        return arch
    mt = _model_type(obj)
    *rest, last = dict.fromkeys(a.block_path for a in ARCHS.values())
    raise HarnessError(
        f"unsupported architecture {type(obj).__name__}: no {', '.join(rest)} or {last} for "
        f"model_type {mt!r} (the architecture table knows {_supported()})",
        "use a model of a supported family, or add an entry to harness/model/arch.py ARCHS "
        "(docs/architecture.md)",
    )


def block_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(module-name prefix, block list) of a supported model."""
    arch = arch_of(model)
    obj: Any = getattr(getattr(model, arch.base, None), arch.blocks, None)
    if not isinstance(obj, nn.ModuleList):
        raise HarnessError(
            f"{type(model).__name__} (model_type {arch.model_type!r}) has no block list at "
            f"{arch.block_path}",
            f"load the causal-LM class of the family ({arch.model_class})",
        )
    return arch.block_path, obj


def blocks_above(model: nn.Module, module: nn.Module) -> nn.ModuleList | None:
    """The blocks above ``module`` (one of ``model``'s blocks), for :func:`only_blocks`.

    None when the cut forward would not be the full one: ``module`` is not a block, the
    family is not in the table, or the layers are of mixed attention types (the forward
    looks the type up by position, which a cut list would shift)."""
    if find_arch(model) is None:
        return None
    _, layers = block_list(model)
    kinds = getattr(getattr(model, "config", None), "layer_types", None)
    if kinds is not None and len(set(kinds)) > 1:
        return None
    for k, block in enumerate(layers):
        if block is module:
            return nn.ModuleList(list(layers)[k + 1 :])
    return None


def _zero_output(_mod: nn.Module, _args: Any, output: Any) -> Any:
    return output.new_zeros(()).expand_as(output)


@contextmanager
def only_blocks(model: nn.Module, upper: nn.ModuleList) -> Iterator[None]:
    """Inside, ``model(inputs_embeds=h, ...)`` runs only ``upper`` (from :func:`blocks_above`)
    on ``h`` (the output of the block below them), then the final norm and the head: the
    model's block list is cut and any module the family adds to ``inputs_embeds`` returns
    zeros (adding 0.0 is exact). Restored on exit."""
    arch = arch_of(model)
    base = getattr(model, arch.base)
    full = getattr(base, arch.blocks)
    hooks = []
    try:
        for name in arch.added_to_embeds:
            hooks.append(getattr(base, name).register_forward_hook(_zero_output))
        setattr(base, arch.blocks, upper)
        yield
    finally:
        setattr(base, arch.blocks, full)
        for h in hooks:
            h.remove()


def _import(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:  # pragma: no cover - a transformers without the family
        return None


def mlp_modules(model: nn.Module) -> list[tuple[nn.Module, MlpKind]]:
    """Each block's MLP that has the family's :class:`MlpKind` layout exactly (that class,
    with ``nn.Linear`` layers); empty for a family without one or outside the table."""
    arch = find_arch(model)
    if arch is None or arch.mlp is None:
        return []
    kind = arch.mlp
    cls = _import(kind.cls)
    if cls is None:  # pragma: no cover
        return []
    base = getattr(model, arch.base, None)
    layers = getattr(base, arch.blocks, None)
    if not isinstance(layers, nn.ModuleList):
        return []
    out: list[tuple[nn.Module, MlpKind]] = []
    for block in layers:
        mlp: Any = getattr(block, arch.mlp_attr, None)
        if type(mlp) is not cls:
            continue
        if all(type(getattr(mlp, n, None)) is nn.Linear for n in (*kind.inputs, kind.output)):
            out.append((mlp, kind))
    return out


def make_config(model_type: str, **shape: Any) -> Any:
    """The family's transformers config: its structural defaults, then ``shape`` (generic
    names such as ``hidden_size``, renamed where the family spells them differently, or the
    family's own keys). ``head_dim`` defaults to hidden / heads where the config takes one."""
    import transformers

    arch = ARCHS.get(model_type)
    if arch is None:
        raise HarnessError(
            f"unsupported architecture {model_type!r} for a random-init config",
            f"use one of the architecture table's families: {_supported()}",
        )
    kw = {**arch.defaults, **{arch.shape_names.get(k, k): v for k, v in shape.items()}}
    if arch.head_dim and {"hidden_size", "num_attention_heads"} <= set(kw):
        kw.setdefault("head_dim", kw["hidden_size"] // kw["num_attention_heads"])
        kw.setdefault("num_key_value_heads", kw["num_attention_heads"])
    return getattr(transformers, arch.config_class)(**kw)


def named_config(name: str) -> Any:
    """The config of a model the table names (the paper's Pythia models), without the hub."""
    if name not in NAMED_CONFIGS:
        raise HarnessError(
            f"no built-in config for {name!r} (random init knows {', '.join(NAMED_CONFIGS)})",
            "pass a local model directory holding a config.json, or use --init pretrained",
        )
    model_type, kw = NAMED_CONFIGS[name]
    return make_config(model_type, **kw)
