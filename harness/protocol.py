"""The frozen experimental protocol: TOML -> frozen dataclasses -> a stable hash.

Every field has a one-line reason in ``protocols/paper.toml``. Unknown or missing keys are an
error naming the key and the file, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.conditions import CONDITIONS, DIRECTIONS
from harness.errors import HarnessError

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


@dataclass(frozen=True)
class ModelsSpec:
    sender: str
    receiver: str
    revision: str
    relative_depth: float
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
    method: str
    lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    warmup_frac: float
    val_frac: float
    ridge: float
    max_train_prompts: int


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
        """SHA-256 of the canonical JSON of every protocol value (short hex, 16 chars)."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
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
                from harness.analysis.artifact import locate_artifact

                artifact = locate_artifact()
            return Path(artifact) / value.removeprefix("artifact:")
        p = Path(value)
        if not p.is_absolute():
            base = Path(self.source_path).parent if self.source_path else PROTOCOL_DIR
            p = base / p
        return p.resolve()


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


def _check(p: Protocol) -> None:
    where = p.source_path or p.name
    if not 0.0 < p.models.relative_depth < 1.0:
        raise HarnessError(
            f"models.relative_depth = {p.models.relative_depth} is out of range in {where}",
            "use a value strictly between 0 and 1 (the paper uses 0.67)",
        )
    run = p.run
    for c in (
        run.conditions + run.strict_conditions + run.appendix_conditions + run.extension_conditions
    ):
        if c not in CONDITIONS:
            raise HarnessError(
                f"unknown condition {c!r} in {where}", f"use one of: {', '.join(CONDITIONS)}"
            )
    for d in p.run.directions:
        if d not in DIRECTIONS:
            raise HarnessError(f"unknown direction {d!r} in {where}", "use 'fwd' and/or 'rev'")
    if not p.run.seeds:
        raise HarnessError(f"run.seeds is empty in {where}", "give at least one seed")
    c = p.causal
    if c.steps < 1 or c.batch_size < 1 or c.eval_every < 1 or c.rank < 0 or c.lr <= 0:
        raise HarnessError(
            f"[causal] in {where} needs steps, batch_size, eval_every >= 1, rank >= 0, lr > 0",
            "correct the values (rank 0 means a full-rank map)",
        )
    if p.translator.method not in ("adamw", "ridge"):
        raise HarnessError(
            f"translator.method = {p.translator.method!r} in {where}", "use 'adamw' or 'ridge'"
        )


def load_protocol(name_or_path: str | os.PathLike[str]) -> Protocol:
    """Load ``paper``, ``mini`` (from ``protocols/``) or a TOML file path."""
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
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"malformed protocol {path}: {exc}", "fix the TOML syntax") from None
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
    _check(proto)
    return proto
