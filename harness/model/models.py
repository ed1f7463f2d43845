"""The sender/receiver pair: loading (hub id, local folder or seeded random init) and sites.

Site names are data: :func:`resolve_block` maps "block output at relative depth d" to one
module for each architecture in :mod:`harness.model.arch`'s table, so conditions and claims
never spell module paths.

Loading never touches the network unless ``HARNESS_ALLOW_DOWNLOAD=1``: a hub id is looked up
in the local Hugging Face cache (``HF_HOME``) only, and a missing model fails fast with one
line saying how to provide it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from harness.errors import HarnessError
from harness.model.arch import block_list, named_config

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "MINI_TOKENIZER_DIR",
    "ModelPair",
    "block_index",
    "load_model",
    "load_pair",
    "load_tokenizer",
    "resolve_block",
]

log = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parents[2]
MINI_TOKENIZER_DIR = _REPO_ROOT / "harness" / "mini" / "tokenizer"
ALLOW_DOWNLOAD_ENV = "HARNESS_ALLOW_DOWNLOAD"


def _allow_download() -> bool:
    """Downloads only on explicit request; otherwise force offline mode (never hang)."""
    if os.environ.get(ALLOW_DOWNLOAD_ENV, "") == "1":
        return True
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return False


def _missing_weights_error(name: str, what: str = "weights") -> HarnessError:
    return HarnessError(
        f"{what} for {name!r} not found locally (the hub is not contacted)",
        f"set {ALLOW_DOWNLOAD_ENV}=1 to fetch them from the hub, set HF_HOME to a cache that "
        "holds them, or pass a local model directory; --init random needs no weights",
    )


def _local_dir(name: str, base: Path | None) -> Path | None:
    """A local folder named by ``name``: relative to the protocol's folder, the working
    directory or the repository root (in that order); None means a hub id."""
    if not name:
        return None
    bases = [b for b in (base, Path.cwd(), _REPO_ROOT) if b is not None]
    for cand in [Path(name)] if Path(name).is_absolute() else [b / name for b in bases]:
        if cand.is_dir():
            return cand.resolve()
    return None


def _check_local_model(folder: Path) -> None:
    """A local model folder must hold a config.json and a weights file."""
    if not (folder / "config.json").is_file():
        raise HarnessError(
            f"model folder {folder} has no config.json",
            "restore it (save_pretrained writes it), or point the protocol at the right folder",
        )
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise HarnessError(
            f"model folder {folder} has no weights file (*.safetensors or *.bin)",
            "restore the weights, or point the protocol at the right folder",
        )


def load_model(
    name: str,
    *,
    revision: str = "main",
    init: str = "pretrained",
    seed: int = 0,
    device: str = "cpu",
    base_dir: Path | None = None,
) -> PreTrainedModel:
    """Load a causal LM in eval mode (float32) from a local folder or the local hub cache.

    ``init="random"`` builds the architecture (a config the architecture table names, the
    paper's Pythia models, or a local ``config.json``) with weights drawn under
    ``torch.manual_seed(seed)`` inside a forked RNG, so the global RNG is untouched and the
    same seed gives the same weights.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    local = _local_dir(name, base_dir)
    model: PreTrainedModel
    info: dict[str, Any]
    if init == "random":
        if local is not None and (local / "config.json").is_file():
            config = AutoConfig.from_pretrained(local, trust_remote_code=False)
        else:
            config = named_config(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    elif init == "pretrained":
        source = str(local) if local is not None else name
        if local is not None:
            _check_local_model(local)
        try:
            with _quiet_transformers():
                loaded = AutoModelForCausalLM.from_pretrained(
                    source,
                    revision=None if local is not None else revision,
                    dtype=torch.float32,
                    local_files_only=not _allow_download(),
                    trust_remote_code=False,  # a folder's own code is never run, never asked
                    weights_only=True,  # a *.bin is unpickled data-only
                    output_loading_info=True,
                )
            # output_loading_info=True returns (model, info); transformers annotates the model
            model, info = cast("tuple[PreTrainedModel, dict[str, Any]]", loaded)
        except (OSError, ValueError) as exc:
            log.debug("loading %s failed: %s", name, exc)
            if local is not None:
                raise HarnessError(
                    f"model folder {local} could not be loaded ({str(exc).splitlines()[0][:160]})",
                    "restore the folder's files (config.json and the weights) or re-save it",
                ) from None
            raise _missing_weights_error(name) from None
        except Exception as exc:  # e.g. safetensors' own error on a truncated file
            if local is None:
                raise
            raise HarnessError(
                f"model folder {local}: the weights are unreadable ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:160]})",
                "restore the weights file (it may be truncated) or re-save the model",
            ) from None
    else:
        raise HarnessError(f"unknown init {init!r}", "use 'pretrained' or 'random'")
    if init == "pretrained":
        _check_loaded(local if local is not None else name, info)
    model.eval()
    # in place: a module's .to returns the module itself. transformers wraps .to with
    # functools.wraps(nn.Module.to), whose stub mistypes the bound call's first argument.
    model.to(device)  # type: ignore[arg-type]
    return model


def _check_loaded(folder: Path | str, info: dict[str, Any]) -> None:
    """Refuse a model whose weights did not all load: a config naming another architecture or
    another number of layers than the weights hold leaves weights missing (newly, randomly
    initialised), unexpected (ignored) or of another shape; each is an error naming the
    folder, never a run on partly random weights."""
    for key, what in (
        ("missing_keys", "missing from the weights (they would be randomly initialised)"),
        ("unexpected_keys", "in the weights but not in the model its config.json builds"),
        ("mismatched_keys", "of another shape than its config.json gives"),
        ("error_msgs", "not loadable"),
    ):
        bad = sorted(str(k if not isinstance(k, tuple) else k[0]) for k in info.get(key) or ())
        if bad:
            raise HarnessError(
                f"model folder {folder}: {len(bad)} weight(s) {what}, e.g. {bad[0]}",
                "its config.json does not describe its weights (architecture or layer count): "
                "restore the folder's config.json or re-save the model",
            )


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' own load report (a multi-line table) is replaced by :func:`_check_loaded`."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def load_tokenizer(
    name: str, *, revision: str = "main", base_dir: Path | None = None
) -> tuple[Any, str]:
    """Load a tokenizer (local folder or the local hub cache) -> (tokenizer, source).

    A missing pad token falls back to eos (left padding is applied by the harness itself).
    """
    from transformers import AutoTokenizer

    local = _local_dir(name, base_dir)
    source = str(local) if local is not None else name
    try:
        tok = AutoTokenizer.from_pretrained(
            source,
            revision=None if local is not None else revision,
            local_files_only=not _allow_download(),
            trust_remote_code=False,
        )
    except (OSError, ValueError) as exc:
        log.debug("loading tokenizer %s failed: %s", name, exc)
        raise _missing_weights_error(name, "tokenizer") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok, source


def block_index(relative_depth: float, n_layers: int) -> int:
    """Block index of relative depth ``d``: ``floor(d * n_layers)``.

    Pinned by tests: 0.67 -> 8 of 12 (Pythia-160M) and 16 of 24 (Pythia-410M), the paper's
    ``gpt_neox.layers.8`` / ``gpt_neox.layers.16``. A tiny epsilon absorbs float error
    (``0.7 * 10`` is 7, not 6).
    """
    if not 0.0 < relative_depth < 1.0:
        raise HarnessError(
            f"relative depth {relative_depth} is out of range", "use a value in (0, 1)"
        )
    idx = math.floor(relative_depth * n_layers + 1e-9)
    if not 0 <= idx < n_layers:
        raise HarnessError(
            f"relative depth {relative_depth} resolves to block {idx} of a {n_layers}-layer model",
            "choose a depth that maps to an existing block",
        )
    return idx


def resolve_block(
    model: nn.Module, relative_depth: float, layer: int = -1, *, key: str = "layer"
) -> tuple[str, nn.Module, int]:
    """(module name, module, index) of the block whose output is "relative depth d", or of
    block ``layer`` where it is set (>= 0; ``key`` names the protocol key in the error)."""
    prefix, blocks = block_list(model)
    if layer >= 0:
        if layer >= len(blocks):
            raise HarnessError(
                f"models.{key} = {layer}, but {type(model).__name__} has {len(blocks)} blocks",
                f"use a block index in 0..{len(blocks) - 1}, or -1 for relative_depth's",
            )
        return f"{prefix}.{layer}", blocks[layer], layer
    idx = block_index(relative_depth, len(blocks))
    return f"{prefix}.{idx}", blocks[idx], idx


@dataclass
class ModelPair:
    """The protocol's sender and receiver (forward direction) and their shared tokenizer.

    ``oriented("rev")`` swaps the roles. ``tokenizer_source`` records which tokenizer was used.
    """

    sender: PreTrainedModel
    receiver: PreTrainedModel
    sender_name: str
    receiver_name: str
    tokenizer: Any
    tokenizer_source: str
    relative_depth: float
    init: str
    sender_tokenizer: Any = None  # None: the sender shares ``tokenizer``
    sender_tokenizer_source: str = ""
    sender_layer: int = -1  # explicit block indices of the protocol's sender and receiver
    receiver_layer: int = -1  # (-1: the block relative_depth picks)

    def block_of(self, model: nn.Module) -> tuple[str, nn.Module, int]:
        """The injection / capture block of ``model`` (the protocol's sender or receiver,
        whichever role it plays in a direction): its explicit layer, or relative_depth's."""
        if model is self.sender:
            return resolve_block(model, self.relative_depth, self.sender_layer, key="sender_layer")
        return resolve_block(model, self.relative_depth, self.receiver_layer, key="receiver_layer")

    def tokenizers(self, direction: str) -> tuple[Any, Any]:
        """(sender-role tokenizer, receiver-role tokenizer) for ``fwd`` or ``rev``."""
        own = self.sender_tokenizer if self.sender_tokenizer is not None else self.tokenizer
        return (own, self.tokenizer) if direction == "fwd" else (self.tokenizer, own)

    def oriented(self, direction: str) -> tuple[PreTrainedModel, str, PreTrainedModel, str]:
        """(sender, sender_name, receiver, receiver_name) for ``fwd`` or ``rev``."""
        if direction == "fwd":
            return self.sender, self.sender_name, self.receiver, self.receiver_name
        if direction == "rev":
            return self.receiver, self.receiver_name, self.sender, self.sender_name
        raise HarnessError(f"unknown direction {direction!r}", "use 'fwd' or 'rev'")


def _pick_tokenizer_source(
    tokenizer: str | None, protocol_tokenizer: str, receiver: str, init: str
) -> str:
    if tokenizer:
        return tokenizer
    if protocol_tokenizer:
        return protocol_tokenizer
    if init == "random":
        if MINI_TOKENIZER_DIR.is_dir():
            log.info("random init: using the mini tokenizer at %s", MINI_TOKENIZER_DIR)
            return str(MINI_TOKENIZER_DIR)
        raise HarnessError(
            "random init needs a local tokenizer (the GPT-NeoX tokenizer is not available offline)",
            "pass --tokenizer PATH to a folder that AutoTokenizer can load",
        )
    return receiver


def load_pair(
    protocol: Any,
    *,
    device: str = "cpu",
    init: str = "pretrained",
    tokenizer: str | None = None,
    init_seed: int = 0,
) -> ModelPair:
    """Load the protocol's models and tokenizer (sender weights seed ``init_seed``, receiver +1).

    Local model and tokenizer paths in the protocol resolve against the TOML's folder.
    """
    models = protocol.models
    base = Path(protocol.source_path).parent if protocol.source_path else None
    tok_source = _pick_tokenizer_source(tokenizer, models.tokenizer, models.receiver, init)
    kw = {"revision": models.revision, "init": init, "device": device, "base_dir": base}
    sender = load_model(models.sender, seed=init_seed, **kw)
    receiver = load_model(models.receiver, seed=init_seed + 1, **kw)
    tok, tok_used = load_tokenizer(tok_source, revision=models.revision, base_dir=base)
    sender_tok, sender_tok_used = None, ""
    if tok_source == models.receiver and models.sender != models.receiver:
        # No tokenizer named: each model reads with its own (the runner then checks that
        # both give the same token ids before any sequence-level injection).
        sender_tok, sender_tok_used = load_tokenizer(
            models.sender, revision=models.revision, base_dir=base
        )
    for name, m, t in (
        (models.sender, sender, sender_tok or tok),
        (models.receiver, receiver, tok),
    ):
        emb = m.get_input_embeddings().weight
        assert isinstance(emb, torch.Tensor)  # an embedding's weight (typed Tensor | Module)
        vocab = emb.shape[0]
        if len(t) > vocab:
            raise HarnessError(
                f"tokenizer of {name} has {len(t)} tokens but the model embeds only {vocab}",
                "use the models' own tokenizer or a smaller one (--tokenizer PATH)",
            )
    return ModelPair(
        sender=sender,
        receiver=receiver,
        sender_name=models.sender,
        receiver_name=models.receiver,
        tokenizer=tok,
        tokenizer_source=tok_used,
        relative_depth=models.relative_depth,
        init=init,
        sender_layer=models.sender_layer,
        receiver_layer=models.receiver_layer,
        sender_tokenizer=sender_tok,
        sender_tokenizer_source=sender_tok_used,
    )
