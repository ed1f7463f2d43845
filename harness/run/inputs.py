"""What a run's artefacts are computed from, as fingerprints: the one home of weight hashing.

A run folder's caches (activations, translators, causal maps) are keyed by these
fingerprints, and every result file records them in ``provenance.inputs``, so a folder resumed
with other weights, another tokenizer, eval or training file, init mode or translator-training
limit recomputes its caches and refuses to keep a result file computed from the old inputs
(one line naming what changed). :func:`weights_fingerprint` keys the source cache
(:mod:`harness.sources`) with the same file hashes. Torch-free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.io import sha256_file
from harness.protocol import Protocol

__all__ = [
    "INPUTS_VERSION",
    "INPUT_LABELS",
    "MAP_TEXTS_INPUTS",
    "TRANSLATOR_INPUTS",
    "RunInputs",
    "folder_digest",
    "run_inputs",
    "source_fingerprint",
    "weights_fingerprint",
]

# Bumped when the layout of a cached artefact changes (the code version where it matters):
# entries of another version are never read.
INPUTS_VERSION = 1
_REPO_ROOT = Path(__file__).resolve().parents[2]
MINI_TOKENIZER = _REPO_ROOT / "harness" / "mini" / "tokenizer"  # random init's default
TOKENIZER_FILES = frozenset(
    {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "vocab.txt",
        "merges.txt",
        "tokenizer.model",
    }
)
# field -> how a one-line message names it
INPUT_LABELS = {
    "sender_weights": "sender weights",
    "receiver_weights": "receiver weights",
    "tokenizer": "tokenizer",
    "eval_sha256": "eval file",
    "train_sha256": "translator-training file",
    "train_limit": "translator-training limit (--train-limit)",
    "texts_sha256": "Ramesh & Li map texts file ([translator] texts)",
    "init": "init mode",
    "version": "cache format version",
}
# the inputs only a translator (linear or causal) depends on
TRANSLATOR_INPUTS = frozenset({"train_sha256", "train_limit"})
# the inputs only Ramesh & Li's conditions depend on (their map W is fitted on these texts)
MAP_TEXTS_INPUTS = frozenset({"texts_sha256"})
_SHA_MEMO: dict[tuple[str, int, int, int], str] = {}


def _file_sha(path: Path) -> str:
    """SHA-256 of a file, memoised per process on (path, inode, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def _local_folder(protocol: Protocol, value: str) -> Path | None:
    """The local folder ``value`` names (as the model loader finds it: the protocol's folder,
    the working directory, the repository root), or None for a hub id."""
    if not value or value.startswith("artifact:"):
        return None
    first = protocol.resolve_path(value)
    if first.is_dir():
        return first
    if not Path(value).is_absolute():
        for base in (Path.cwd(), _REPO_ROOT):
            if (base / value).is_dir():
                return (base / value).resolve()
    return None


def folder_digest(folder: Path, *, only: frozenset[str] | None = None, skip=frozenset()) -> str:
    """``name:sha256`` of every file directly in ``folder`` (``only`` those names, none of
    ``skip``), one line each, sorted by name."""
    lines = []
    for f in sorted(p for p in folder.iterdir() if p.is_file()):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        lines.append(f"{f.name}:{_file_sha(f)}\n")
    return "".join(lines)


def _hub_snapshot(name: str, revision: str) -> str:
    """The commit of the Hugging Face cache snapshot ``name`` resolves to ('' if none)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - installed with transformers
        return ""
    try:
        hit = try_to_load_from_cache(name, "config.json", revision=revision)
    except Exception:  # a malformed id or cache: no snapshot to name
        return ""
    return Path(hit).parent.name if isinstance(hit, str) else ""


def weights_fingerprint(protocol: Protocol) -> str:
    """Short hash of what the protocol's model names point at (the source cache's key).

    Local model and tokenizer folders are hashed file by file, so retrained weights never
    reuse stale cached results; hub ids contribute their name and revision.
    """
    h = hashlib.sha256()
    m = protocol.models
    for value in (m.sender, m.receiver, m.tokenizer):
        h.update(f"{value}@{m.revision}\n".encode())
        folder = _local_folder(protocol, value)
        if folder is not None:
            h.update(folder_digest(folder).encode())
    return h.hexdigest()[:8]


def source_fingerprint(protocol: Protocol) -> str:
    """The source cache's key beside the protocol hash: :func:`weights_fingerprint`, plus
    the SHA-256 of a local translator-training file and of Ramesh & Li's map texts file
    (the eval file's is pinned by the protocol; an ``artifact:`` file is checked against the
    artifact's manifest)."""
    fp = weights_fingerprint(protocol)
    value = protocol.eval.translator_train_path
    if value and not value.startswith("artifact:"):
        train = protocol.resolve_path(value)
        if train.is_file():
            fp += "-" + _file_sha(train)[:8]
    texts = _texts_sha(protocol)
    if texts:
        fp += "-t" + texts[:8]
    return fp


def _texts_sha(protocol: Protocol) -> str:
    """SHA-256 of ``[translator] texts`` ('' when none is set, 'absent' when it is missing:
    the Ramesh & Li conditions then refuse to run, naming the path)."""
    value = protocol.translator.texts
    if not value:
        return ""
    try:
        path = protocol.resolve_path(value)
    except Exception:  # an artifact: path with no artifact; the runner says so
        return "absent"
    return _file_sha(path) if path.is_file() else "absent"


def _component(protocol: Protocol, value: str, *, tokenizer: bool) -> str:
    """Fingerprint of one model's weights (tokenizer files left out) or of a tokenizer."""
    h = hashlib.sha256(f"{value}@{protocol.models.revision}\n".encode())
    folder = _local_folder(protocol, value)
    if folder is None:
        h.update(f"hub snapshot {_hub_snapshot(value, protocol.models.revision)}\n".encode())
    elif tokenizer:
        h.update(folder_digest(folder, only=TOKENIZER_FILES).encode())
    else:
        h.update(folder_digest(folder, skip=TOKENIZER_FILES).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class RunInputs:
    """Fingerprints of everything a run's artefacts are computed from (see the module)."""

    sender_weights: str
    receiver_weights: str
    tokenizer: str
    eval_sha256: str
    train_sha256: str
    train_limit: str
    init: str
    texts_sha256: str = ""
    version: int = INPUTS_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tag(self, *fields: str) -> str:
        """Short hash of ``fields`` (a cache-folder suffix)."""
        d = self.to_dict()
        text = "|".join(f"{k}={d[k]}" for k in (*fields, "version"))
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def activations_tag(self) -> str:
        """What block outputs depend on besides the prompts: the weights and their init."""
        return self.tag("sender_weights", "receiver_weights", "init")

    @property
    def translator_tag(self) -> str:
        """What a fitted translator depends on besides the protocol."""
        return self.tag(
            "sender_weights", "receiver_weights", "init", "tokenizer", "train_sha256",
            "train_limit",
        )  # fmt: skip

    def changes(self, recorded: Any, *, translator: bool, map_texts: bool = False) -> list[str]:
        """What differs between ``recorded`` (a file's ``provenance.inputs``) and these
        inputs, as ``'receiver weights changed (0a1b2c3d4e -> 4e5f6a7b8c)'``; the training file and
        limit count only for files that used a translator, the map texts only for files of
        Ramesh & Li's conditions (``map_texts``)."""
        if not isinstance(recorded, dict):
            return ["it records no inputs (an older runner wrote it)"]
        out = []
        for key, now in self.to_dict().items():
            if key in TRANSLATOR_INPUTS and not translator:
                continue
            if key in MAP_TEXTS_INPUTS and not map_texts:
                continue
            was = recorded.get(key)
            if was != now:
                out.append(f"{INPUT_LABELS[key]} changed ({str(was)[:10]} -> {str(now)[:10]})")
        return out


def _tokenizer_name(protocol: Protocol, tokenizer: str | None, init: str) -> str:
    """The tokenizer the model loader will read (``harness.model.models`` picks the same)."""
    if tokenizer:
        return tokenizer
    if protocol.models.tokenizer:
        return protocol.models.tokenizer
    if init == "random":
        return str(MINI_TOKENIZER)
    return ""  # each model's own, from its folder


def run_inputs(
    protocol: Protocol,
    *,
    eval_sha256: str,
    artifact: str | os.PathLike[str] | None = None,
    init: str = "pretrained",
    init_seed: int = 0,
    tokenizer: str | None = None,
    train_limit: int | None = None,
) -> RunInputs:
    """The fingerprints of a run of ``protocol`` with these options (no model is loaded)."""
    m = protocol.models
    tok_name = _tokenizer_name(protocol, tokenizer, init)
    if tok_name:
        tok = _component(protocol, tok_name, tokenizer=True)
    else:  # the models' own tokenizer files
        tok = hashlib.sha256(
            "|".join(_component(protocol, v, tokenizer=True) for v in (m.sender, m.receiver))
            .encode()
        ).hexdigest()[:16]  # fmt: skip
    try:
        train = protocol.translator_train_path(artifact)
        train_sha = _file_sha(train) if train.is_file() else "absent"
    except Exception:  # an artifact: path with no artifact; the runner says so
        train_sha = "absent"
    return RunInputs(
        sender_weights=_component(protocol, m.sender, tokenizer=False),
        receiver_weights=_component(protocol, m.receiver, tokenizer=False),
        tokenizer=tok,
        eval_sha256=eval_sha256,
        train_sha256=train_sha,
        train_limit=str(
            protocol.translator.max_train_prompts
            if train_limit is None
            else min(protocol.translator.max_train_prompts, train_limit)
        ),
        init="pretrained" if init == "pretrained" else f"{init}:{init_seed}",
        texts_sha256=_texts_sha(protocol),
    )
