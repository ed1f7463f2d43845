"""Result-file dictionaries in the artifact's layout.

Field names, their order and which fields a condition carries mirror the published files
(``results/final/*.json``); our additions are ``provenance`` and, for translator conditions,
``translator``. Torch-free.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.analysis import metrics as M
from harness.analysis.evalset import EvalRow
from harness.analysis.results import SCHEMA_VERSION
from harness.conditions import Condition, InjectionSpec, Shuffle
from harness.errors import HarnessError
from harness.protocol import Protocol
from harness.spec.jobs import Job

if TYPE_CHECKING:  # the runner's types; records stay torch-free at run time
    from harness.model.models import ModelPair
    from harness.run.roles import Role

__all__ = [
    "DETERMINISTIC_REASON",
    "Generated",
    "Job",
    "JobExtras",
    "build_result",
    "check_resumable",
    "check_token_match",
    "injection_dict",
    "models_dict",
    "provenance",
]

DETERMINISTIC_REASON = (
    "greedy decoding with do_sample=false; this condition does not consume a seed-dependent "
    "translation checkpoint or random control."
)


@dataclass
class Generated:
    """What one result file's generation produced: the samples that ran (``idx``, eval-row
    indices) and their predictions, plus per sample, when the condition has them, the mean
    norms of the translated, native and injected vectors (injection) or the relay text and
    both prompt lengths (the relay)."""

    pred: list[str]
    idx: list[int]
    translated_norm: list[float] | None = None
    b_hidden_norm: list[float] | None = None
    injected_norm: list[float] | None = None
    relay: list[str] | None = None
    sender_prompt_len: list[int] | None = None
    prompt_len_b: list[int] | None = None


@dataclass
class JobExtras:
    """What a translator condition adds to its file: the checkpoint it used (relative to the
    output folder), the translator's record (seed, direction, method, held-out metrics) and,
    for shuffles, the donors drawn."""

    checkpoint: str | None = None
    translator: dict[str, Any] | None = None
    shuffle: Shuffle | None = None
    # Ramesh & Li's conditions: the searched blocks, W's held-out fit and the layer search
    ramesh_li: dict[str, Any] | None = None


def check_token_match(
    rows: Sequence[EvalRow],
    sender_ids: Sequence[Sequence[int]],
    receiver_ids: Sequence[Sequence[int]],
) -> None:
    """Refuse sequence-level injection when sender and receiver token ids differ."""
    for row, a, b in zip(rows, sender_ids, receiver_ids, strict=True):
        if a != b:
            raise HarnessError(
                f"sample {row.sample_id}: sender and receiver token ids differ "
                f"({len(a)} vs {len(b)} tokens); sequence-level injection needs identical ids",
                "use models that share a tokenizer, or run only no_inject and nl_relay",
            )


def _explicit_layers(protocol: Protocol) -> dict[str, Any]:
    """``config.layers`` where the protocol sets explicit blocks (a layer-pair sweep's
    points); absent otherwise, so files of a relative-depth protocol keep the artifact's
    keys."""
    m = protocol.models
    if m.sender_layer < 0 and m.receiver_layer < 0:
        return {}
    return {"layers": {"sender": m.sender_layer, "receiver": m.receiver_layer}}


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def injection_dict(
    cond: Condition, spec: InjectionSpec | None, alpha: float | None, shuffle: Shuffle | None
) -> dict:
    """The ``injection`` block of a result file, from the spec that ran (artifact layout)."""
    return cond.injection_record(spec, alpha, shuffle)


def models_dict(cond: Condition, sender: Role, receiver: Role) -> dict[str, Any]:
    """The ``models`` block: who sent the injected states, and at which blocks."""
    if cond.models == "receiver_self":
        return {
            "model_a": receiver.name,
            "model_b": receiver.name,
            "layer_a": receiver.site,
            "layer_b": receiver.site,
        }
    if cond.models in ("random_direction", "zero_vector"):
        return {"model_a": cond.models, "model_b": receiver.name, "layer_a": None,
                "layer_b": receiver.site}  # fmt: skip
    return {
        "model_a": sender.name,
        "model_b": receiver.name,
        "layer_a": None if cond.models == "pair_no_site" else sender.site,
        "layer_b": receiver.site,
    }


def build_result(
    protocol: Protocol,
    job: Job,
    cond: Condition,
    sender: Role,
    receiver: Role,
    rows: Sequence[EvalRow],
    gen: Generated,
    extras: JobExtras,
    *,
    eval_sha: str,
    device: str,
    elapsed: float,
    spec: InjectionSpec | None = None,
) -> dict[str, Any]:
    """Assemble one result file's dictionary (artifact field order, plus our extras).

    ``spec``: the injection that ran (None for no injection and the relay)."""
    name = cond.name
    alpha = protocol.alpha_for(cond.alpha)
    translator_like = cond.uses_translator
    injected = cond.plan is not None
    shuffle = extras.shuffle
    per_sample: list[dict[str, Any]] = []
    for k, i in enumerate(gen.idx):
        row = rows[i]
        pred = gen.pred[k]
        rec: dict[str, Any] = {
            "idx": i,
            "sample_id": row.sample_id,
            "gold": row.answer,
            "prediction": pred,
            "legacy_contains": M.legacy_contains(pred, row.answer),
            "legacy_exact_match": M.exact_match(pred, row.answer),
            "eval_result": {
                "correct": M.word_boundary_contains(pred, row.answer),
                "exact_match": M.normalized_exact_match(pred, row.answer),
            },
        }
        for key in ("source_eval_index", "source_component_file"):
            if key in row.extra:
                rec[key] = row.extra[key]
        len_a, len_b = len(sender.ids[i]), len(receiver.ids[i])
        if cond.relay:
            assert gen.relay is not None and gen.sender_prompt_len is not None
            assert gen.prompt_len_b is not None
            rec["relay"] = gen.relay[k]
            rec["sender_prompt_len"] = gen.sender_prompt_len[k]
            rec["prompt_len_b"] = gen.prompt_len_b[k]
            rec["prompt_mode"] = "nl_relay"
        elif translator_like:
            rec["prompt_len_a"] = len_a
            rec["prompt_mode"] = "full_input"
            rec["prompt_len_b"] = len_b
        else:
            rec["prompt_len_b"] = len_b
            rec["prompt_mode"] = "full_input"
        if injected and cond.sequence_level:
            rec["token_ids_match"] = sender.ids[i] == receiver.ids[i]
            rec["seq_len_match"] = len_a == len_b
        if injected:
            assert gen.translated_norm is not None and gen.b_hidden_norm is not None
            assert gen.injected_norm is not None
            rec["translated_norm_mean"] = gen.translated_norm[k]
            rec["b_hidden_norm_mean"] = gen.b_hidden_norm[k]
            rec["injected_norm_mean"] = gen.injected_norm[k]
        if shuffle is not None:
            singles, strict = shuffle.singletons, shuffle.strict
            rec["shuffle_donor_idx"] = shuffle.donors[i]
            rec["shuffle_self_fallback"] = shuffle.donors[i] == i
            rec["shuffle_fallback_count_run"] = 0 if strict else singles
            rec["shuffle_excluded_singleton_count_run"] = singles if strict else 0
        per_sample.append(rec)

    def col(key: str) -> list[Any]:
        return [r[key] for r in per_sample if key in r]

    n = len(per_sample)
    config: dict[str, Any] = {
        "tier": protocol.name,
        "task": "multi_hop",
        "test_file": protocol.eval.path,
        "clean_eval_hash": eval_sha,
        "clean_eval_version": protocol.eval.version,
        "n_samples": n,
        "max_length": protocol.prompt.max_length,
        "layer_rel": protocol.models.relative_depth,
        **_explicit_layers(protocol),
        "device": device,
        "generation": protocol.decoding.generation_config(),
        "sender_generation": (protocol.decoding.relay_generation_config() if cond.relay else None),
    }
    if shuffle is not None:
        config["source_clean_eval_n_samples"] = len(rows)
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "condition": name,
        "direction": job.direction,
        "seed": job.seed,
        "deterministic": cond.deterministic,
        "config": config,
        "models": models_dict(cond, sender, receiver),
        "checkpoint": extras.checkpoint,
        "injection": injection_dict(cond, spec, alpha, shuffle),
    }
    if cond.plan is not None and cond.deterministic:
        data["deterministic_reason"] = DETERMINISTIC_REASON
    data["elapsed_sec"] = round(elapsed, 3)
    data["per_sample"] = per_sample
    data["metrics"] = {
        "n": n,
        "contains_acc": _mean([float(v) for v in col("legacy_contains")]),
        "exact_match_acc": _mean([float(v) for v in col("legacy_exact_match")]),
    }
    data["diagnostics"] = {
        "mean_prompt_len_a": _mean(col("prompt_len_a")),
        "mean_prompt_len_b": _mean(col("prompt_len_b")),
        "mean_translated_norm": _mean(col("translated_norm_mean")),
        "mean_b_hidden_norm": _mean(col("b_hidden_norm_mean")),
        "mean_injected_norm": _mean(col("injected_norm_mean")),
        "seq_len_mismatch_count": sum(1 for v in col("seq_len_match") if not v),
        "token_mismatch_count": sum(1 for v in col("token_ids_match") if not v),
        "shuffle_self_fallback_count": sum(1 for v in col("shuffle_self_fallback") if v),
    }
    if extras.translator is not None:
        data["translator"] = extras.translator
    if extras.ramesh_li is not None:  # the blocks their layer search chose, not the protocol's
        data["models"]["layer_a"] = extras.ramesh_li["layer_a"]
        data["models"]["layer_b"] = extras.ramesh_li["layer_b"]
        data["ramesh_li"] = extras.ramesh_li
    return data


def _git_hash() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def provenance(
    protocol: Protocol,
    pair: ModelPair,
    device: str,
    timings: dict[str, float],
    *,
    batch_size: int,
    n_eval: int,
) -> dict[str, Any]:
    """Versions, git hash, protocol hash, device, timings and the tokenizer used."""
    return {
        "runner": "harness.runner",
        "protocol": protocol.name,
        "protocol_hash": protocol.hash,
        "git_hash": _git_hash(),
        "python": platform.python_version(),
        "packages": {
            p: _version(p) for p in ("torch", "transformers", "tokenizers", "safetensors", "numpy")
        },
        "device": device,
        "init": pair.init,
        "tokenizer": pair.tokenizer_source,
        "sender_tokenizer": pair.sender_tokenizer_source or pair.tokenizer_source,
        "sender": pair.sender_name,
        "receiver": pair.receiver_name,
        "batch_size": batch_size,
        "n_eval_rows": n_eval,
        "timings": timings,
    }


def check_resumable(path: Path, proto: Protocol, n_rows: int) -> None:
    """An existing file is only reused if the same protocol over the same rows wrote it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise HarnessError(
            f"{path} exists but is not readable JSON", "delete it; the runner rewrites it"
        ) from None
    prov = data.get("provenance") or {}
    if prov.get("protocol_hash") != proto.hash or prov.get("n_eval_rows") != n_rows:
        raise HarnessError(
            f"{path} was written by another run (protocol hash {prov.get('protocol_hash')}, "
            f"{prov.get('n_eval_rows')} eval rows; this run: {proto.hash}, {n_rows})",
            "use a fresh --out folder or delete the stale files",
        )
