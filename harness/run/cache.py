"""The runner's on-disk caches, in one place: activations, translators and result files.

Everything lives under the run's output folder and is keyed by the protocol hash and by the
fingerprints of what it was computed from (:class:`harness.run.inputs.RunInputs`: weights,
tokenizer, eval and training files, init mode, cache format version), so two protocols or two
sets of inputs never share an entry and a change recomputes:

- ``.cache/activations/PROTOCOL_HASH-INPUTS/SITE-KEY.safetensors``: block outputs, one
  float32 tensor per prompt, with the SHA-256 of their contents in the file's metadata
  (INPUTS: the weights and init they were captured from);
- ``.cache/translators/PROTOCOL_HASH-INPUTS/KEY.{json,safetensors}``: fitted linear and
  causal translators (:func:`harness.model.translator.save_translator`, which checksums the
  weights and the config and metrics beside them; INPUTS: weights, init, tokenizer,
  training file and limit);
- the result files themselves (``h1_*.json``, the relay's included) with
  ``.cache/jobs/FILE.lock``: a file that exists is kept on resume only if this protocol over
  these rows and these inputs wrote it (else one line naming what changed), and a file being
  written is claimed under a lock, so processes sharing the folder (pytest-xdist workers,
  concurrent CLI runs) write each file once.

Each entry is computed under a file lock, so an artefact several processes need is computed
once. A cache entry that is unreadable, mismatched, fails its checksum or holds NaN/inf is a
miss: it is logged and recomputed, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from harness.analysis.results import load_result_file
from harness.conditions import CONDITIONS
from harness.errors import HarnessError
from harness.io import atomic_write_bytes, short_hash
from harness.model.activations import Activations
from harness.model.translator import CorruptTranslatorError, Translator, load_translator
from harness.protocol import Protocol
from harness.run.inputs import RunInputs
from harness.run.records import check_resumable

__all__ = [
    "RunCache",
    "load_activations",
    "save_activations",
    "short_hash",
    "states_digest",
]

log = logging.getLogger(__name__)


def ids_hash(ids: Sequence[Sequence[int]]) -> str:
    """A short hash of a list of prompts' token ids."""
    return short_hash(json.dumps([list(x) for x in ids]))


def states_digest(states: Sequence[torch.Tensor]) -> str:
    """SHA-256 over every state's shape and float32 bytes, in order."""
    h = hashlib.sha256()
    for s in states:
        h.update(repr(tuple(s.shape)).encode())
        h.update(s.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def save_activations(path: Path, acts: Activations) -> None:
    """Write ``acts`` atomically with the SHA-256 of their contents in the file's metadata
    (checked on load)."""
    from safetensors.torch import save

    tensors = {f"{i:06d}": s.contiguous() for i, s in enumerate(acts.states)}
    atomic_write_bytes(path, save(tensors, metadata={"sha256": states_digest(acts.states)}))


def load_activations(path: Path, site: str, ids: Sequence[Sequence[int]]) -> Activations | None:
    """The cached activations at ``path`` if they fit ``ids`` (one ``[len, dim]`` float32
    tensor per prompt); ``None`` when absent, unreadable or mismatched (then recapture)."""
    if not path.is_file():
        return None
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            recorded = (fh.metadata() or {}).get("sha256")
    except (SafetensorError, OSError, ValueError) as exc:
        log.warning("activation cache %s is unreadable (%s); recapturing", path, exc)
        return None
    keys = [f"{i:06d}" for i in range(len(ids))]
    states = tuple(tensors[k] for k in keys if k in tensors)
    if (
        len(tensors) != len(ids)
        or len(states) != len(ids)
        or any(
            s.dtype != torch.float32 or s.dim() != 2 or s.shape[0] != len(t)
            for s, t in zip(states, ids, strict=True)
        )
    ):
        log.warning("activation cache %s does not match the prompts; recapturing", path)
        return None
    if recorded != states_digest(states):
        log.warning("activation cache %s fails its SHA-256 check; recapturing", path)
        return None
    if not all(bool(torch.isfinite(s).all()) for s in states):
        log.warning("activation cache %s holds NaN or inf; recapturing", path)
        return None
    return Activations(
        site=site,
        states=states,
        token_ids=tuple(tuple(t) for t in ids),
    )


class RunCache:
    """The activation, translator and result caches of one output folder and protocol."""

    def __init__(self, out: Path, protocol: Protocol, inputs: RunInputs | None = None) -> None:
        """``inputs``: the run's fingerprints (None: keyed by the protocol alone, for tests
        of the cache mechanics)."""
        self.out = out
        self.protocol = protocol
        self.inputs = inputs

    def _folder(self, kind: str) -> Path:
        name = self.protocol.hash
        if self.inputs is not None:
            tag = {
                "activations": self.inputs.activations_tag,
                "translators": self.inputs.translator_tag,
            }[kind]
            name = f"{name}-{tag}"
        folder = self.out / ".cache" / kind / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- activations ---------------------------------------------------------------------
    def activations(
        self,
        site: str,
        key: str,
        ids: Sequence[Sequence[int]],
        compute: Callable[[], Activations],
    ) -> tuple[Activations, bool]:
        """The activations stored at ``site``/``key`` for prompts ``ids``, or ``compute()``'s
        (then stored). Returns them and whether they were computed now. The key must name
        everything the states depend on besides the prompts (model, site, padding)."""
        from filelock import FileLock

        path = self._folder("activations") / f"{site}-{key}-n{len(ids)}-{ids_hash(ids)}.safetensors"
        with FileLock(str(path.with_suffix(".lock"))):
            acts = load_activations(path, site, ids)
            if acts is not None:
                return acts, False
            acts = compute()
            save_activations(path, acts)
            return acts, True

    # -- translators ---------------------------------------------------------------------
    def translator(
        self,
        key: str,
        fit: Callable[[], Translator],
        *,
        sender_dim: int,
        receiver_dim: int,
    ) -> tuple[Translator, str, bool]:
        """The translator stored under ``key``, or ``fit()``'s (then stored). Returns it, its
        checkpoint path relative to the output folder (the ``checkpoint`` field of a result
        file) and whether it was fitted now. A corrupt entry is refitted."""
        from filelock import FileLock

        from harness.model.translator import save_translator

        folder = self._folder("translators")
        base = folder / key
        fitted = False
        with FileLock(str(folder / f"{key}.lock")):
            tr = self._stored_translator(base, sender_dim, receiver_dim)
            if tr is None:
                tr = fit()
                save_translator(tr, base)
                fitted = True
        rel = os.path.relpath(base.with_suffix(".safetensors"), self.out)
        return tr, rel, fitted

    @staticmethod
    def _stored_translator(base: Path, sender_dim: int, receiver_dim: int) -> Translator | None:
        if not base.with_suffix(".safetensors").is_file():
            return None
        try:
            return load_translator(base, sender_dim=sender_dim, receiver_dim=receiver_dim)
        except CorruptTranslatorError as exc:
            log.warning("%s; refitting it", exc.what)
            return None

    # -- result files --------------------------------------------------------------------
    def has_result(self, filename: str) -> bool:
        return (self.out / filename).is_file()

    def check_result(self, filename: str, n_rows: int) -> None:
        """A file a resume keeps must be a valid result of this protocol over these rows,
        computed from these inputs (weights, tokenizer, eval and training files, init):
        otherwise one line naming the file and what changed."""
        path = self.out / filename
        try:
            f = load_result_file(path)
        except HarnessError as exc:
            raise HarnessError(
                f"cannot resume: {exc.what}", "delete it and re-run; the runner rewrites it"
            ) from None
        prov = f.raw.get("provenance")
        prov = prov if isinstance(prov, dict) else {}
        changed: list[str] = []
        if self.inputs is not None:
            cond = CONDITIONS.get(f.condition)
            translator = "translator" in f.raw or (cond is not None and cond.uses_translator)
            texts = cond is not None and cond.reads_map_texts
            changed = self.inputs.changes(
                prov.get("inputs"), translator=translator, map_texts=texts
            )
        if changed and prov.get("protocol_hash") != self.protocol.hash:
            changed.append(
                f"protocol changed ({prov.get('protocol_hash')} -> {self.protocol.hash})"
            )
        if not changed:
            check_resumable(path, self.protocol, n_rows)
        else:
            raise HarnessError(
                f"cannot resume: {path} was computed from other inputs: " + "; ".join(changed),
                "use a fresh --out folder, or delete the stale result files (the runner "
                "recomputes them and its caches)",
            )

    @contextmanager
    def claim(self, filename: str, *, wait: bool) -> Iterator[bool]:
        """Hold the lock of result file ``filename`` for the block; yields whether this process
        holds it (with ``wait`` it waits for another process's lock, e.g. one writing the
        file, and takes it over when that process died)."""
        from filelock import FileLock, Timeout

        folder = self.out / ".cache" / "jobs"
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / f"{filename}.lock"))
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
