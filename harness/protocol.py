"""The frozen experimental protocol: TOML -> frozen dataclasses -> a stable hash.

Every field has a one-line reason in ``protocols/paper.toml``. Unknown or missing keys are an
error naming the key and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import string
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.conditions import CONDITIONS
from harness.errors import HarnessError
from harness.io import read_text_bounded
from harness.spec.rules import direction_problems, seed_problems

__all__ = [
    "PROTOCOL_DIR",
    "AuditSpec",
    "CausalSpec",
    "DecodingSpec",
    "EvalSpec",
    "InjectionSettings",
    "ModelsSpec",
    "PromptSpec",
    "Protocol",
    "RunSpec",
    "StatsSpec",
    "TranslatorSpec",
    "load_protocol",
]

PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "protocols"
_UNSET_LAYERS = ("sender_layer", "receiver_layer")


@dataclass(frozen=True)
class ModelsSpec:
    sender: str
    receiver: str
    revision: str
    relative_depth: float
    # explicit block indices (output of block k of the sender, j of the receiver; a layer-pair
    # sweep's axes); -1 leaves the block to ``relative_depth``
    sender_layer: int
    receiver_layer: int
    tokenizer: str


@dataclass(frozen=True)
class EvalSpec:
    path: str
    sha256: str
    version: str
    n: int
    strict_n: int
    translator_train_path: str


@dataclass(frozen=True)
class PromptSpec:
    template: str
    relay_sender_template: str
    relay_receiver_template: str
    receiver_template: str
    max_length: int


@dataclass(frozen=True)
class DecodingSpec:
    max_new_tokens: int
    do_sample: bool
    repetition_penalty: float
    no_repeat_ngram_size: int
    relay_max_new_tokens: int

    def generation_config(self) -> dict[str, Any]:
        """The receiver's decoding settings as serialised in result files."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }

    def relay_generation_config(self) -> dict[str, Any]:
        """The sender's relay decoding settings as serialised in result files."""
        return {**self.generation_config(), "max_new_tokens": self.relay_max_new_tokens}


@dataclass(frozen=True)
class InjectionSettings:
    timing: str
    additive_scale: float
    scale_corrected_alpha: float
    best_alpha: float


@dataclass(frozen=True)
class RunSpec:
    seeds: tuple[int, ...]
    directions: tuple[str, ...]
    conditions: tuple[str, ...]
    strict_conditions: tuple[str, ...]
    appendix_conditions: tuple[str, ...]
    extension_conditions: tuple[str, ...]
    batch_size: int


@dataclass(frozen=True)
class TranslatorSpec:
    """How the linear translator is fitted: the protocol's ``[translator]`` table, the one
    recipe type (``harness.model.translator.fit_translator`` takes it as is, and a fitted
    translator records it). The defaults are the paper's recipe, for direct calls; a protocol
    file must still give every value."""

    method: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.01
    epochs: int = 20
    batch_size: int = 256
    warmup_frac: float = 0.1
    val_frac: float = 0.1
    ridge: float = 1e-3
    max_train_prompts: int = 560
    texts: str = ""  # JSONL of {"text"} rows for Ramesh & Li's map W ("": none given)


@dataclass(frozen=True)
class CausalSpec:
    """The causal translator's training recipe (beyond the paper; see harness.model.causal)."""

    lr: float
    weight_decay: float
    steps: int
    batch_size: int
    warmup_frac: float
    val_frac: float
    eval_every: int
    alignment_weight: float
    rank: int


@dataclass(frozen=True)
class StatsSpec:
    bootstrap_resamples: int
    confidence: float
    tost_low: float
    tost_high: float


@dataclass(frozen=True)
class AuditSpec:
    per_file: int
    conditions: tuple[str, ...]


@dataclass(frozen=True)
class Protocol:
    """A complete, hashable description of one experiment."""

    name: str
    description: str
    models: ModelsSpec
    eval: EvalSpec
    prompt: PromptSpec
    decoding: DecodingSpec
    injection: InjectionSettings
    run: RunSpec
    translator: TranslatorSpec
    causal: CausalSpec
    stats: StatsSpec
    audit: AuditSpec
    source_path: str = dataclasses.field(default="", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (without the volatile ``source_path``)."""
        d = dataclasses.asdict(self)
        d.pop("source_path", None)
        return d

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON of every protocol value (short hex, 16 chars).

        An unset explicit layer (``models.sender_layer`` / ``receiver_layer`` = -1, the block
        ``relative_depth`` picks) is left out, so protocols written before those keys existed
        keep their hash, their caches and their result files' ``protocol_hash``."""
        d = self.to_dict()
        for key in _UNSET_LAYERS:
            if d["models"][key] == -1:
                del d["models"][key]
        canon = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    def alpha_for(self, which: str | None) -> float | None:
        """The alpha value a condition's file name carries."""
        if which is None:
            return None
        return {
            "scale_corrected": self.injection.scale_corrected_alpha,
            "best_alpha": self.injection.best_alpha,
        }[which]

    def resolve_path(self, value: str, artifact: str | os.PathLike[str] | None = None) -> Path:
        """Resolve a protocol path: ``artifact:REL`` against the artifact, else the TOML folder."""
        if value.startswith("artifact:"):
            if artifact is None:
                from harness.spec.artifact import locate_artifact

                artifact = locate_artifact()
            return Path(artifact) / value.removeprefix("artifact:")
        p = Path(value)
        if not p.is_absolute():
            base = Path(self.source_path).parent if self.source_path else PROTOCOL_DIR
            p = base / p
        return p.resolve()

    def eval_path(self, artifact: str | os.PathLike[str] | None = None) -> Path:
        """Where the eval set lives (``eval.path`` resolved; ``artifact`` for ``artifact:``)."""
        return self.resolve_path(self.eval.path, artifact)

    def translator_train_path(self, artifact: str | os.PathLike[str] | None = None) -> Path:
        """Where the translator-training prompts live (``eval.translator_train_path``)."""
        return self.resolve_path(self.eval.translator_train_path, artifact)


_SECTIONS: dict[str, type] = {
    "models": ModelsSpec,
    "eval": EvalSpec,
    "prompt": PromptSpec,
    "decoding": DecodingSpec,
    "injection": InjectionSettings,
    "run": RunSpec,
    "translator": TranslatorSpec,
    "causal": CausalSpec,
    "stats": StatsSpec,
    "audit": AuditSpec,
}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, list):
            raise HarnessError(f"{where} must be a list, got {type(value).__name__}")
        (item_t, _) = typing.get_args(annotation)
        return tuple(_coerce(v, item_t, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(annotation, types.UnionType):
        raise TypeError(annotation)  # pragma: no cover - no unions in the schema
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise HarnessError(f"{where} must be true or false, got {value!r}")
    if annotation in (int, float, str) and (
        not isinstance(value, annotation) or isinstance(value, bool)
    ):
        raise HarnessError(f"{where} must be {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type, table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise HarnessError(f"{where} must be a table")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.name != "source_path"]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise HarnessError(
            f"unknown protocol key {where}.{unknown[0]}",
            f"check the spelling; allowed keys in [{where}]: {', '.join(fields)}",
        )
    missing = [f for f in fields if f not in table]
    if missing:
        raise HarnessError(
            f"missing protocol key {where}.{missing[0]}", "add it; every value is explicit"
        )
    return cls(**{f: _coerce(table[f], hints[f], f"{where}.{f}") for f in fields})


# -- every value's range and every cross-field rule, checked before any model loads --------
_TEMPLATE_FIELDS = {
    "template": (("context", "question"),),
    "relay_sender_template": (("context",),),
    "relay_receiver_template": (("relay", "question"),),
    # the receiver may read the same prompt, or one that withholds the context
    "receiver_template": (("context", "question"), ("question",)),
}
_TIMINGS = ("prefill_only",)  # what the runner's hook implements
_HEX = set("0123456789abcdef")


def _between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    def ok(v: float) -> bool:
        if not math.isfinite(v):
            return False
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    text = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return ok, text


# A protocol's name becomes a folder name and a claim-table column: a name, never a path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _count(hi: int, lo: int = 1, why: str = ""):
    """An integer in ``[lo, hi]``: the upper bound is what a run can do (memory, time)."""
    return (lambda v: lo <= v <= hi), f"an integer >= {lo} and <= {hi}{why}"


# Upper bounds: far above every shipped protocol, far below what would exhaust a machine
# (one value past them would allocate a KV cache for a billion tokens or loop for days).
_TOKENS = _count(8192, why=" (tokens; longer than any supported model's context)")
_ROWS = _count(10_000_000, why=" (rows)")
_BATCH = _count(65_536, why=" (a batch must fit in memory)")
_STEPS = _count(1_000_000, why=" (optimiser steps or epochs)")
_POSITIVE = (lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
_NON_NEGATIVE = (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
_FRACTION = _between(0, 1)
_OPEN_FRACTION = _between(0, 1, lo_open=True, hi_open=True)
_WARMUP = _between(0, 1, hi_open=True)

# key -> (rule, allowed values as the error says them)
RULES: dict[str, tuple[Any, str]] = {
    "models.relative_depth": _OPEN_FRACTION,
    "models.sender_layer": _count(4096, lo=-1, why=" (a block index; -1: relative_depth's)"),
    "models.receiver_layer": _count(4096, lo=-1, why=" (a block index; -1: relative_depth's)"),
    "eval.n": _ROWS,
    "eval.strict_n": _ROWS,
    "prompt.max_length": _TOKENS,
    "decoding.max_new_tokens": _TOKENS,
    "decoding.relay_max_new_tokens": _TOKENS,
    "decoding.repetition_penalty": _POSITIVE,
    "decoding.no_repeat_ngram_size": _count(8192, lo=0),
    "injection.additive_scale": _NON_NEGATIVE,
    "injection.scale_corrected_alpha": _FRACTION,
    "injection.best_alpha": _FRACTION,
    "run.batch_size": _BATCH,
    "translator.lr": _POSITIVE,
    "translator.weight_decay": _NON_NEGATIVE,
    "translator.epochs": _STEPS,
    "translator.batch_size": _count(1 << 24, why=" (tokens per step must fit in memory)"),
    "translator.warmup_frac": _WARMUP,
    "translator.val_frac": _OPEN_FRACTION,
    "translator.ridge": _NON_NEGATIVE,
    "translator.max_train_prompts": _ROWS,
    "causal.lr": _POSITIVE,
    "causal.weight_decay": _NON_NEGATIVE,
    "causal.steps": _STEPS,
    "causal.batch_size": _BATCH,
    "causal.warmup_frac": _WARMUP,
    "causal.val_frac": _OPEN_FRACTION,
    "causal.eval_every": _STEPS,
    "causal.alignment_weight": _NON_NEGATIVE,
    "causal.rank": _count(65_536, lo=0),
    # 20x the paper's 5000: each resample redraws every pair of every comparison row
    "stats.bootstrap_resamples": _count(100_000, why=" (20x the paper's 5000)"),
    "stats.confidence": _OPEN_FRACTION,
    "stats.tost_low": (math.isfinite, "a finite number"),
    "stats.tost_high": (math.isfinite, "a finite number"),
    "audit.per_file": _ROWS,
}


def _value(p: Protocol, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(p, section), name)


def _layer_problems(p: Protocol) -> list[str]:
    """An explicit layer past the last block of a local model folder (its ``config.json``);
    a hub model's is checked when it loads."""
    out = []
    for key, model in (("sender_layer", p.models.sender), ("receiver_layer", p.models.receiver)):
        layer = getattr(p.models, key)
        if layer < 0 or not model or model.startswith("artifact:"):
            continue
        config = p.resolve_path(model) / "config.json"
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a hub id, or a folder the loader will name
        n = data.get("num_hidden_layers", data.get("n_layer")) if isinstance(data, dict) else None
        if isinstance(n, int) and not isinstance(n, bool) and layer >= n:
            out.append(f"models.{key} = {layer}: {model} has {n} blocks (0..{n - 1}, or -1)")
    return out


def protocol_problems(p: Protocol) -> list[str]:
    """Every rule ``p`` breaks, one line each (key, value, what is allowed); empty when valid.

    The rules: each numeric value's range (:data:`RULES`); templates hold exactly their
    placeholders; the timing and decoding are ones the runner implements; seeds, directions
    and condition lists are known and unique; the strict subset is not larger than the eval;
    the TOST bounds are ordered; the audited conditions exist.
    """
    out = []
    if not _NAME.fullmatch(p.name) or ".." in p.name:
        out.append(
            f"name = {p.name!r}: must be a plain name of at most 64 letters, digits, '.', '_' "
            "or '-' (it names cache folders and claim columns: no path separators, no '..')"
        )
    for key, (ok, allowed) in RULES.items():
        v = _value(p, key)
        if not ok(v):
            out.append(f"{key} = {v!r}: must be {allowed}")
    for key, want in _TEMPLATE_FIELDS.items():
        text = getattr(p.prompt, key)
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as exc:
            out.append(f"prompt.{key} = {text!r}: {exc} (write a literal brace as {{{{ or }}}})")
            continue
        if not any(sorted(fields) == sorted(w) for w in want):
            allowed = " or ".join(", ".join("{" + f + "}" for f in w) for w in want)
            out.append(
                f"prompt.{key} = {text!r}: must hold exactly the placeholders {allowed} "
                f"once each (found {', '.join('{' + f + '}' for f in fields) or 'none'})"
            )
    if p.injection.timing not in _TIMINGS:
        out.append(
            f"injection.timing = {p.injection.timing!r}: must be one of {_TIMINGS} "
            "(the runner's hook acts on the prompt prefill only)"
        )
    if p.decoding.do_sample:
        out.append("decoding.do_sample = true: must be false (the runner decodes greedily)")
    if not p.models.sender or not p.models.receiver:
        out.append("models.sender and models.receiver: must name a hub id or a local folder")
    out += _layer_problems(p)
    if not (len(p.eval.sha256) == 64 and set(p.eval.sha256) <= _HEX):
        out.append(f"eval.sha256 = {p.eval.sha256!r}: must be 64 lowercase hex digits")
    if p.eval.strict_n > p.eval.n:
        out.append(f"eval.strict_n = {p.eval.strict_n}: must be <= eval.n = {p.eval.n}")
    run = p.run
    out += seed_problems(run.seeds, "run.seeds")
    out += direction_problems(run.directions, "run.directions")
    lists = {
        "run.conditions": run.conditions,
        "run.strict_conditions": run.strict_conditions,
        "run.appendix_conditions": run.appendix_conditions,
        "run.extension_conditions": run.extension_conditions,
        "audit.conditions": p.audit.conditions,
    }
    seen: dict[str, str] = {}
    for key, names in lists.items():
        for c in names:
            if c not in CONDITIONS:
                out.append(f"{key} has {c!r}: must be one of {', '.join(CONDITIONS)}")
            elif key != "audit.conditions":
                if c in seen:
                    out.append(f"{key} has {c!r}, already listed in {seen[c]}: list it once")
                seen[c] = key
    if not run.conditions:
        out.append("run.conditions = []: must hold at least one condition")
    if not p.stats.tost_low < p.stats.tost_high:
        out.append(
            f"stats.tost_low = {p.stats.tost_low}, stats.tost_high = {p.stats.tost_high}: "
            "must satisfy tost_low < tost_high"
        )
    if p.translator.method not in ("adamw", "ridge", "identity"):
        out.append(
            f"translator.method = {p.translator.method!r}: must be 'adamw', 'ridge' or 'identity'"
        )
    return out


def _check(p: Protocol) -> None:
    problems = protocol_problems(p)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise HarnessError(
            f"protocol {p.source_path or p.name}: {problems[0]}{more}",
            "correct the value in the TOML ('python -m harness validate-protocol PATH' lists "
            "every problem)",
        )


def load_protocol(name_or_path: str | os.PathLike[str], *, check: bool = True) -> Protocol:
    """Load ``paper``, ``mini`` (from ``protocols/``) or a TOML file path.

    Every value is type-checked; with ``check`` (the default) every range and cross-field
    rule too (:func:`protocol_problems`), so a bad protocol is refused before any work."""
    text = str(name_or_path)
    path = Path(text)
    if not text.endswith(".toml") and not path.exists():
        path = PROTOCOL_DIR / f"{text}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml")))
        raise HarnessError(
            f"protocol not found: {name_or_path}", f"use one of: {known}, or a path to a .toml"
        )
    try:
        data = tomllib.loads(read_text_bounded(path, "protocol", limit=16 << 20))
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"malformed protocol {path}: {exc}", "fix the TOML syntax") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(
            f"protocol {path} is not UTF-8 text (byte {exc.start}: {exc.reason})",
            "save the file as UTF-8",
        ) from None
    except OSError as exc:
        raise HarnessError(f"cannot read protocol {path}: {exc.strerror}") from None
    top = {"name", "description", *_SECTIONS}
    unknown = sorted(set(data) - top)
    if unknown:
        raise HarnessError(
            f"unknown protocol key {unknown[0]!r} in {path}",
            f"allowed top-level keys: {', '.join(sorted(top))}",
        )
    for key in sorted(top):
        if key not in data:
            raise HarnessError(f"missing protocol key {key!r} in {path}", "add it")
    try:
        proto = Protocol(
            name=_coerce(data["name"], str, "name"),
            description=_coerce(data["description"], str, "description"),
            **{k: _build(cls, data[k], k) for k, cls in _SECTIONS.items()},
            source_path=str(path.resolve()),
        )
    except HarnessError as exc:
        if exc.fix:
            raise HarnessError(f"{path}: {exc.what}", exc.fix) from None
        raise HarnessError(f"{path}: {exc.what}", "correct the value in the TOML") from None
    if check:
        _check(proto)
    return proto
