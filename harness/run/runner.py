"""Run a protocol end to end and write result files in the artifact's schema.

eval set (SHA-256 checked) -> models -> prompts -> captured activations -> translator per seed
(cached on disk, keyed by the protocol hash) -> one injection plan per condition -> batched
greedy generation with a prefill-only hook -> per-sample records and diagnostics ->
``write_result_file``. Existing result files are skipped (resume). Each file carries the
artifact's fields plus ``provenance`` (versions, git hash, protocol hash, device, timings,
tokenizer) and, for translator conditions, ``translator`` (its held-out metrics).

The translator is fitted on the protocol's training split, formatted with the injection
prompt template, all prompt positions of all prompts in order (the last ``val_frac`` held
out). Which files a run writes and their exact fields live in :mod:`harness.run.records`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness import events
from harness.analysis.evalset import EvalRow, load_evalset
from harness.analysis.results import load_result_file, write_result_file
from harness.conditions import CONDITIONS, Condition
from harness.errors import HarnessError
from harness.io import atomic_write_bytes
from harness.model.activations import Activations, capture, check_finite
from harness.model.generate import GenerationSettings, decode_new, generate_tokens
from harness.model.injection import (
    InjectionSpec,
    PrefillInjection,
    pad_sources,
    random_directions,
    shuffle_donors,
)
from harness.model.models import ModelPair, load_pair, resolve_block
from harness.model.translator import (
    CorruptTranslatorError,
    Translator,
    fit_translator,
    load_translator,
    save_translator,
)
from harness.protocol import Protocol, load_protocol
from harness.run.records import (
    Job,
    build_result,
    check_resumable,
    check_token_match,
    plan_jobs,
    provenance,
)

__all__ = ["Job", "RunOptions", "check_token_match", "plan_jobs", "run_protocol"]

log = logging.getLogger(__name__)


@dataclass
class _Direction:
    """Everything one direction's conditions share (computed lazily, once)."""

    direction: str
    sender: Any
    sender_name: str
    receiver: Any
    receiver_name: str
    site_a: str
    module_a: Any
    site_b: str
    module_b: Any
    ids_a: list[list[int]]
    ids_b: list[list[int]]
    tok_a: Any  # the sender's tokenizer (relay prompt and relay text)
    tok_b: Any  # the receiver's tokenizer (prompts and answers)
    settings: GenerationSettings  # the receiver's answer decoding
    relay_settings: GenerationSettings  # the sender's relay decoding
    states_a: Activations | None = None
    states_b: Activations | None = None
    translators: dict[Any, tuple[Translator, str]] = field(default_factory=dict)
    train: tuple[torch.Tensor, torch.Tensor] | None = None
    # translator-training rows, their receiver prompt ids and per-prompt sender states
    train_prompts: tuple[list[EvalRow], list[list[int]], Activations] | None = None


class _Run:
    def __init__(
        self,
        protocol: Protocol,
        out_dir: Path,
        rows: Sequence[EvalRow],
        eval_sha: str,
        pair: ModelPair,
        *,
        device: str,
        batch_size: int,
        artifact: str | None,
        train_limit: int | None,
        use_cache: bool,
        init_seed: int = 0,
    ) -> None:
        self.p = protocol
        self.out = out_dir
        self.rows = list(rows)
        self.eval_sha = eval_sha
        self.pair = pair
        self.device = device
        self.bs = batch_size
        self.artifact = artifact
        self.train_limit = train_limit
        self.use_cache = use_cache
        self.init_seed = init_seed
        self.dirs: dict[str, _Direction] = {}
        self.timings: dict[str, float] = {}

    # -- prompts and activations -------------------------------------------------------
    def encode(self, texts: Sequence[str], tok: Any) -> list[list[int]]:
        n = self.p.prompt.max_length
        return [list(tok(t, truncation=True, max_length=n)["input_ids"]) for t in texts]

    def prompts(self, rows: Sequence[EvalRow], *, receiver: bool = False) -> list[str]:
        """The prompts the sender reads (``template``), or with ``receiver`` the ones the
        receiver reads (``receiver_template``, e.g. with the context withheld)."""
        tpl = self.p.prompt.receiver_template if receiver else self.p.prompt.template
        return [tpl.format(context=r.context, question=r.question) for r in rows]

    def direction(self, name: str) -> _Direction:
        if name not in self.dirs:
            sender, s_name, receiver, r_name = self.pair.oriented(name)
            site_a, mod_a, _ = resolve_block(sender, self.pair.relative_depth)
            site_b, mod_b, _ = resolve_block(receiver, self.pair.relative_depth)
            tok_a, tok_b = self.pair.tokenizers(name)
            texts = self.prompts(self.rows)
            receiver_texts = self.prompts(self.rows, receiver=True)
            decoding = self.p.decoding
            self.dirs[name] = _Direction(
                name,
                sender,
                s_name,
                receiver,
                r_name,
                site_a,
                mod_a,
                site_b,
                mod_b,
                ids_a=self.encode(texts, tok_a),
                ids_b=self.encode(receiver_texts, tok_b),
                tok_a=tok_a,
                tok_b=tok_b,
                settings=GenerationSettings.from_protocol(decoding, tok_b),
                relay_settings=GenerationSettings.from_protocol(decoding, tok_a, relay=True),
            )
        return self.dirs[name]

    def _capture(
        self,
        model: Any,
        module: Any,
        site: str,
        ids: list[list[int]],
        pad_id: int,
        *,
        model_name: str,
        what: str,
        labels: Sequence[str],
    ) -> Activations:
        """Block outputs of ``model`` at ``site`` over ``ids``, computed once per output folder.

        Cached on disk (``OUT/.cache/activations/PROTOCOL_HASH/``, safetensors, under a file
        lock) so processes that share the folder, such as pytest-xdist workers splitting a
        grid, capture each activation set once; a resumed run reloads them. A cache file that
        does not match the prompts is recaptured."""
        from filelock import FileLock

        ids_tag = _ids_hash(ids)
        init = self.pair.init if self.pair.init == "pretrained" else f"random{self.init_seed}"
        tag = _short_hash(f"{model_name}|{site}|{pad_id}|{self.bs}")
        key = f"{init}-{tag}-n{len(ids)}-{ids_tag}"
        folder = self.out / ".cache" / "activations" / self.p.hash
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{site}-{key}.safetensors"
        with FileLock(str(path.with_suffix(".lock"))):
            acts = _load_activations(path, site, ids)
            if acts is None:
                t0 = time.perf_counter()
                acts = capture(model, module, ids, site=site, pad_id=pad_id, batch_size=self.bs)
                check_finite(acts.states, what=what, site=site, labels=labels)
                _save_activations(path, acts)
                events.record("activations", key=f"{self.p.hash}:{site}:{len(ids)}:{ids_tag}")
                self.timings["capture_s"] = (
                    self.timings.get("capture_s", 0.0) + time.perf_counter() - t0
                )
        return acts

    def sender_states(self, d: _Direction) -> Activations:
        if d.states_a is None:
            d.states_a = self._capture(
                d.sender,
                d.module_a,
                d.site_a,
                d.ids_a,
                d.relay_settings.pad_token_id,
                model_name=d.sender_name,
                what="sender activations",
                labels=[r.sample_id for r in self.rows],
            )
        return d.states_a

    def receiver_states(self, d: _Direction) -> Activations:
        if d.states_b is None:
            d.states_b = self._capture(
                d.receiver,
                d.module_b,
                d.site_b,
                d.ids_b,
                d.settings.pad_token_id,
                model_name=d.receiver_name,
                what="receiver activations",
                labels=[r.sample_id for r in self.rows],
            )
        return d.states_b

    # -- translators ---------------------------------------------------------------------
    def _train_tokens(self, d: _Direction) -> tuple[torch.Tensor, torch.Tensor]:
        if d.train is None:
            path = self.p.resolve_path(self.p.eval.translator_train_path, self.artifact)
            rows = load_evalset(path).rows
            cap = self.p.translator.max_train_prompts
            if self.train_limit is not None:
                cap = min(cap, self.train_limit)
            texts = self.prompts(rows[:cap])
            ids_a, ids_b = self.encode(texts, d.tok_a), self.encode(texts, d.tok_b)
            for row, a, b in zip(rows, ids_a, ids_b, strict=False):
                if a != b:
                    raise HarnessError(
                        f"translator prompt {row.sample_id}: sender and receiver token ids differ",
                        "the translator pairs positions, so both models must share a tokenizer",
                    )
            pad_a, pad_b = d.relay_settings.pad_token_id, d.settings.pad_token_id
            labels = [f"{r.sample_id} (translator training)" for r in rows[: len(ids_a)]]
            sender_acts = self._capture(
                d.sender,
                d.module_a,
                d.site_a,
                ids_a,
                pad_a,
                model_name=d.sender_name,
                what="sender activations",
                labels=labels,
            )
            xa = sender_acts.concat()
            xb = self._capture(
                d.receiver,
                d.module_b,
                d.site_b,
                ids_b,
                pad_b,
                model_name=d.receiver_name,
                what="receiver activations",
                labels=labels,
            ).concat()
            d.train = (xa, xb)
            d.train_prompts = (rows[: len(ids_b)], ids_b, sender_acts)
        return d.train

    def _cached_translator(self, d: _Direction, base: Path) -> Translator | None:
        """The cached translator at ``base``, or None when absent or corrupt (then refit)."""
        if not base.with_suffix(".safetensors").is_file():
            return None
        try:
            return load_translator(
                base, sender_dim=_width(d.sender), receiver_dim=_width(d.receiver)
            )
        except CorruptTranslatorError as exc:
            log.warning("%s; refitting it", exc.what)
            return None

    def translator(self, d: _Direction, seed: int) -> tuple[Translator, str]:
        if seed in d.translators:
            return d.translators[seed]
        from filelock import FileLock

        ts = self.p.translator
        key, cache_dir = self._translator_key(d, seed)
        base = cache_dir / key
        with FileLock(str(cache_dir / f"{key}.lock")):
            tr = self._cached_translator(d, base)
            if tr is None:
                xa, xb = self._train_tokens(d)
                t0 = time.perf_counter()
                tr = fit_translator(
                    xa,
                    xb,
                    method=ts.method,
                    seed=seed,
                    lr=ts.lr,
                    weight_decay=ts.weight_decay,
                    epochs=ts.epochs,
                    batch_size=ts.batch_size,
                    warmup_frac=ts.warmup_frac,
                    val_frac=ts.val_frac,
                    ridge=ts.ridge,
                )
                tr.metrics["fit_seconds"] = round(time.perf_counter() - t0, 3)
                save_translator(tr, base)
                events.record("translator", key=f"{self.p.hash}:{key}")
                log.info(
                    "translator %s: %s",
                    key,
                    {k: tr.metrics[k] for k in ("normalized_r2", "normalized_cosine")},
                )
        rel = os.path.relpath(base.with_suffix(".safetensors"), self.out)
        d.translators[seed] = (tr, rel)
        return d.translators[seed]

    def _translator_key(self, d: _Direction, seed: int, kind: str = "") -> tuple[str, Path]:
        """Cache key and folder of a translator (``kind`` prefixes non-linear ones)."""
        ts = self.p.translator
        n_train = (
            ts.max_train_prompts
            if self.train_limit is None
            else min(ts.max_train_prompts, self.train_limit)
        )
        tok_tag = _short_hash(self.pair.tokenizer_source + self.pair.sender_tokenizer_source)
        init = self.pair.init if self.pair.init == "pretrained" else f"random{self.init_seed}"
        key = f"{kind}{init}-tok{tok_tag}-{d.direction}-seed{seed}-n{n_train}"
        cache_dir = self.out / ".cache" / "translators" / self.p.hash
        cache_dir.mkdir(parents=True, exist_ok=True)
        return key, cache_dir

    def causal_translator(self, d: _Direction, seed: int, condition: str) -> tuple[Translator, str]:
        """The translator trained through the receiver for ``condition`` (cached like the
        linear one; initialised from the linear translator of the same seed)."""
        if (condition, seed) in d.translators:
            return d.translators[(condition, seed)]
        from filelock import FileLock

        from harness.model.causal import CausalConfig, CausalExample, fit_causal_translator

        plan = CONDITIONS[condition].plan
        assert plan is not None and plan.translator == "causal"
        mode = plan.mode
        linear, _ = self.translator(d, seed)
        key, cache_dir = self._translator_key(d, seed, kind=f"causal_{mode}-")
        base = cache_dir / key
        with FileLock(str(cache_dir / f"{key}.lock")):
            tr = self._cached_translator(d, base)
            if tr is None:
                xa, xb = self._train_tokens(d)
                assert d.train_prompts is not None
                rows, ids_b, acts = d.train_prompts
                examples = [
                    CausalExample(
                        tuple(ids),
                        states,
                        tuple(d.tok_b(" " + row.answer, add_special_tokens=False)["input_ids"]),
                    )
                    for row, ids, states in zip(rows, ids_b, acts.states, strict=True)
                ]
                t0 = time.perf_counter()
                tr = fit_causal_translator(
                    d.receiver,
                    d.module_b,
                    examples,
                    init=linear,
                    spec=plan.spec(self.p),
                    cfg=CausalConfig(**dataclasses.asdict(self.p.causal)),
                    seed=seed,
                    pad_id=d.settings.pad_token_id,
                    token_x=xa,
                    token_y=xb,
                    token_val_frac=self.p.translator.val_frac,
                    mode=mode,
                )
                tr.metrics["fit_seconds"] = round(time.perf_counter() - t0, 3)
                save_translator(tr, base)
                events.record("translator", key=f"{self.p.hash}:{key}")
                log.info(
                    "causal translator %s: held-out answer NLL %.3f (no injection %.3f, init %.3f)",
                    key,
                    tr.metrics["val_answer_nll"],
                    tr.metrics["val_answer_nll_no_inject"],
                    tr.metrics["val_answer_nll_init"],
                )
        rel = os.path.relpath(base.with_suffix(".safetensors"), self.out)
        d.translators[(condition, seed)] = (tr, rel)
        return d.translators[(condition, seed)]

    # -- generation ----------------------------------------------------------------------
    def generate(
        self,
        model: Any,
        ids: list[list[int]],
        settings: GenerationSettings,
        tok: Any,
        module: Any = None,
        spec: InjectionSpec | None = None,
        sources: Sequence[torch.Tensor] | None = None,
        bar: Any = None,
    ) -> tuple[list[str], dict[str, list[float]]]:
        hooks: list[tuple[list[int], PrefillInjection]] = []

        def factory(idx: list[int], mask: torch.Tensor) -> PrefillInjection:
            assert spec is not None and sources is not None
            src = pad_sources([sources[i] for i in idx], mask.shape[1])
            if spec.positions == "last":  # left padded: the last column is each last token
                mask = torch.zeros_like(mask)
                mask[:, -1] = 1
            hook = PrefillInjection(module, spec, src, mask)
            hooks.append((idx, hook))
            return hook

        new = generate_tokens(
            model,
            ids,
            settings,
            batch_size=self.bs,
            use_cache=self.use_cache,
            injection=factory if spec is not None else None,
            progress=bar.update if bar is not None else None,
        )
        stats: dict[str, list[float]] = {
            "b_hidden_norm": [0.0] * len(ids),
            "injected_norm": [0.0] * len(ids),
        }
        for idx, hook in hooks:
            for key in stats:
                for i, v in zip(idx, hook.stats[key], strict=True):
                    stats[key][i] = v
        return [decode_new(tok, t) for t in new], stats

    # -- one result file -----------------------------------------------------------------
    def run_job(self, job: Job, bar: Any = None) -> Path:
        cond = CONDITIONS[job.condition]
        d = self.direction(job.direction)
        t0 = time.perf_counter()
        if cond.sequence_level:
            check_token_match(self.rows, d)
        extra: dict[str, Any] = {}
        spec = None
        if cond.relay:
            samples = self._relay(d, bar)
        elif cond.plan is None:
            preds, _ = self.generate(d.receiver, d.ids_b, d.settings, d.tok_b, bar=bar)
            samples = {"pred": preds, "idx": list(range(len(self.rows)))}
        else:
            spec = cond.plan.spec(self.p)
            samples, extra = self._inject(cond, spec, job, d, bar)
        elapsed = time.perf_counter() - t0
        data = build_result(
            self.p,
            job,
            cond,
            d,
            self.rows,
            samples,
            extra,
            eval_sha=self.eval_sha,
            device=self.device,
            elapsed=elapsed,
            spec=spec,
        )
        data["provenance"] = provenance(
            self.p,
            self.pair,
            self.device,
            {
                **{k: round(v, 3) for k, v in self.timings.items()},
                "generation_s": round(elapsed, 3),
            },
            batch_size=self.bs,
            n_eval=len(self.rows),
        )
        path = write_result_file(self.out, data)
        events.record("result_file", key=f"{self.p.hash}:{path.name}")
        return path

    def _relay(self, d: _Direction, bar: Any) -> dict[str, Any]:
        tpl = self.p.prompt.relay_sender_template
        sender_ids = self.encode([tpl.format(context=r.context) for r in self.rows], d.tok_a)
        relays, _ = self.generate(d.sender, sender_ids, d.relay_settings, d.tok_a)
        rtpl = self.p.prompt.relay_receiver_template
        texts = [
            rtpl.format(relay=rel, question=r.question)
            for rel, r in zip(relays, self.rows, strict=True)
        ]
        recv_ids = self.encode(texts, d.tok_b)
        preds, _ = self.generate(d.receiver, recv_ids, d.settings, d.tok_b, bar=bar)
        return {
            "pred": preds,
            "idx": list(range(len(self.rows))),
            "relay": relays,
            "sender_prompt_len": [len(t) for t in sender_ids],
            "prompt_len_b": [len(t) for t in recv_ids],
        }

    def _inject(
        self, cond: Condition, spec: InjectionSpec, job: Job, d: _Direction, bar: Any
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Generate with ``cond``'s plan: gather the states it injects, then run ``spec``."""
        plan = cond.plan
        assert plan is not None
        n = len(self.rows)
        lengths = [len(t) for t in d.ids_b]
        idx = list(range(n))
        extra: dict[str, Any] = {}
        if plan.states == "receiver":
            sources = list(self.receiver_states(d).states)
        elif plan.states == "zero":
            dim = int(d.receiver.get_input_embeddings().weight.shape[1])
            sources = [torch.zeros(k, dim) for k in lengths]
        elif plan.states == "random":
            dim = int(d.receiver.get_input_embeddings().weight.shape[1])
            sources = random_directions(lengths, dim, _seed(job))
        else:
            if plan.translator == "causal":
                tr, ckpt = self.causal_translator(d, _seed(job), cond.name)
            else:
                tr, ckpt = self.translator(d, _seed(job))
            extra["checkpoint"] = ckpt
            extra["translator"] = {
                "seed": job.seed,
                "direction": job.direction,
                "method": tr.config.method,
                **tr.metrics,
            }
            translated = [tr(s) for s in self.sender_states(d).states]
            check_finite(
                translated,
                what="translator output",
                site=f"{d.site_a} -> {d.site_b} ({ckpt})",
                labels=[r.sample_id for r in self.rows],
                fix="the translator is numerically broken: delete it from the translator "
                "cache to refit it, and check the sender activations",
            )
            if plan.last_token:  # the sender's last state, at the receiver's last position
                sources = []
                for t, ids in zip(translated, d.ids_b, strict=True):
                    src = torch.zeros(len(ids), t.shape[-1], dtype=t.dtype)
                    src[-1] = t[-1]
                    sources.append(src)
                extra["translated"] = [t[-1:] for t in translated]
            elif plan.last_broadcast:
                sources = [t[-1:].expand_as(t) for t in translated]
                extra["translated"] = translated
            elif plan.shuffle is not None:
                strict = plan.shuffle == "strict"
                donors, singles = shuffle_donors(lengths, _seed(job), strict=strict)
                idx = [i for i in range(n) if donors[i] is not None]
                sources = [translated[donors[i]] for i in idx]  # type: ignore[index]
                extra.update(donors=donors, singletons=singles, strict=strict)
            else:
                sources = translated
        ids = [d.ids_b[i] for i in idx]
        preds, stats = self.generate(
            d.receiver, ids, d.settings, d.tok_b, d.module_b, spec, sources, bar=bar
        )
        shown = extra.pop("translated", sources)
        tnorm = [float(s.float().norm(dim=-1).mean()) if s.shape[0] else 0.0 for s in shown]
        return {"pred": preds, "idx": idx, "translated_norm": tnorm, **stats}, extra


def _width(model: Any) -> int:
    """Hidden width of a model's residual stream (its input embedding size)."""
    return int(model.get_input_embeddings().weight.shape[1])


def _seed(job: Job) -> int:
    assert job.seed is not None
    return job.seed


def _states_digest(states: Sequence[torch.Tensor]) -> str:
    """SHA-256 over every state's shape and float32 bytes, in order."""
    import hashlib

    h = hashlib.sha256()
    for s in states:
        h.update(repr(tuple(s.shape)).encode())
        h.update(s.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def _save_activations(path: Path, acts: Activations) -> None:
    """Write ``acts`` atomically, as the translators are (:func:`atomic_write_bytes`), with
    the SHA-256 of their contents in the file's metadata (checked on load)."""
    from safetensors.torch import save

    tensors = {f"{i:06d}": s.contiguous() for i, s in enumerate(acts.states)}
    atomic_write_bytes(path, save(tensors, metadata={"sha256": _states_digest(acts.states)}))


def _load_activations(path: Path, site: str, ids: Sequence[Sequence[int]]) -> Activations | None:
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
    states = tuple(tensors.get(f"{i:06d}") for i in range(len(ids)))
    if len(tensors) != len(ids) or any(
        s is None or s.dtype != torch.float32 or s.dim() != 2 or s.shape[0] != len(t)
        for s, t in zip(states, ids, strict=True)
    ):
        log.warning("activation cache %s does not match the prompts; recapturing", path)
        return None
    if recorded != _states_digest(states):  # type: ignore[arg-type]
        log.warning("activation cache %s fails its SHA-256 check; recapturing", path)
        return None
    if not all(bool(torch.isfinite(s).all()) for s in states):  # type: ignore[union-attr]
        log.warning("activation cache %s holds NaN or inf; recapturing", path)
        return None
    return Activations(
        site=site,
        states=states,  # type: ignore[arg-type]
        token_ids=tuple(tuple(t) for t in ids),
    )


def _ids_hash(ids: Sequence[Sequence[int]]) -> str:
    return _short_hash(json.dumps([list(x) for x in ids]))


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunOptions:
    """How to run a protocol (everything but the protocol and the output folder).

    conditions / seeds / directions: a subset of the protocol's (None: all of them);
    ``include_strict`` / ``include_appendix`` / ``include_extension`` add those groups when
    ``conditions`` is None. limit: the first N eval rows (smoke runs). device: ``cpu``,
    ``cuda``, ``cuda:N``. init: ``pretrained`` or ``random`` (seeded with ``init_seed``;
    ``tokenizer`` then names one). batch_size: generation batch (None: the protocol's).
    artifact: where ``artifact:`` paths resolve. train_limit: at most N translator-training
    prompts. use_cache: generate with a KV cache. progress: a progress bar. threads: torch's
    CPU threads for the run (None: torch's choice). share_jobs: several processes may run the
    same protocol into the same folder at once: each result file is claimed under a file
    lock, a file another process is writing is waited for at the end, and the activations and
    translators they share come from the folder's locked caches, so every artefact is still
    computed once.
    """

    conditions: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    directions: tuple[str, ...] | None = None
    limit: int | None = None
    device: str = "cpu"
    init: str = "pretrained"
    tokenizer: str | None = None
    batch_size: int | None = None
    artifact: str | None = None
    train_limit: int | None = None
    include_strict: bool = True
    include_appendix: bool = False
    include_extension: bool = True
    init_seed: int = 0
    use_cache: bool = True
    progress: bool = True
    threads: int | None = None
    share_jobs: bool = False


def run_protocol(
    protocol: Protocol | str,
    out_dir: str | os.PathLike[str],
    options: RunOptions | None = None,
    **overrides: Any,
) -> list[Path]:
    """Run ``protocol`` into ``out_dir`` and return the paths of its result files (written or
    already there). ``options`` (:class:`RunOptions`), with any of its fields overridden by
    keyword (``run_protocol(p, out, progress=False)``)."""
    from tqdm.auto import tqdm

    try:
        o = dataclasses.replace(options or RunOptions(), **overrides)
    except TypeError as exc:  # an unknown option name
        raise HarnessError(f"run_protocol: {exc}", "see harness.run.runner.RunOptions") from None
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HarnessError(f"--out {out} is a file, not a folder", "pass a folder path")
    jobs = plan_jobs(
        proto,
        o.conditions,
        o.seeds,
        o.directions,
        include_strict=o.include_strict,
        include_appendix=o.include_appendix,
        include_extension=o.include_extension,
    )
    evalset = load_evalset(proto.resolve_path(proto.eval.path, o.artifact), proto.eval.sha256)
    rows = evalset.rows[: o.limit] if o.limit is not None else evalset.rows
    todo = [j for j in jobs if not (out / j.filename).is_file()]
    for j in jobs:
        if j not in todo:
            _check_existing(out / j.filename, proto, len(rows))
            log.info("resume: %s exists, skipped", j.filename)
    if not todo:
        return [out / j.filename for j in jobs]
    _check_device(o.device)
    with _torch_threads(o.threads):
        t0 = time.perf_counter()
        pair = load_pair(
            proto, device=o.device, init=o.init, tokenizer=o.tokenizer, init_seed=o.init_seed
        )
        run = _Run(
            proto,
            out,
            rows,
            evalset.sha256,
            pair,
            device=o.device,
            batch_size=o.batch_size or proto.run.batch_size,
            artifact=o.artifact,
            train_limit=o.train_limit,
            use_cache=o.use_cache,
            init_seed=o.init_seed,
        )
        run.timings["load_s"] = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)
        total = len(todo) * len(rows)
        with tqdm(total=total, disable=not o.progress, unit="sample", desc=proto.name) as bar:
            if not o.share_jobs:
                for job in todo:
                    bar.set_postfix_str(job.filename, refresh=False)
                    run.run_job(job, bar)
            else:
                _run_shared(run, out, todo, bar)
    return [out / j.filename for j in jobs]


def _run_shared(run: _Run, out: Path, todo: Sequence[Job], bar: Any) -> None:
    """Run the jobs no other process has claimed, then wait for (or take over) the rest."""
    from filelock import FileLock, Timeout

    locks = out / ".cache" / "jobs"
    locks.mkdir(parents=True, exist_ok=True)

    def claim(job: Job, timeout: float) -> bool:
        lock = FileLock(str(locks / f"{job.filename}.lock"))
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            return False
        try:
            if not (out / job.filename).is_file():  # not finished by another process meanwhile
                bar.set_postfix_str(job.filename, refresh=False)
                run.run_job(job, bar)
        finally:
            lock.release()
        return True

    deferred = [job for job in todo if not claim(job, timeout=0)]
    for job in deferred:  # being written elsewhere: wait; recompute if that process died
        claim(job, timeout=-1)


def _check_existing(path: Path, proto: Protocol, n_rows: int) -> None:
    """A file a resume keeps must be a valid result of this protocol over these rows."""
    try:
        load_result_file(path)
    except HarnessError as exc:
        raise HarnessError(
            f"cannot resume: {exc.what}", "delete it and re-run; the runner rewrites it"
        ) from None
    check_resumable(path, proto, n_rows)


def _check_device(device: str) -> None:
    """Refuse an unknown or absent device before any model is loaded."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise HarnessError(f"unknown device {device!r}", "use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(
                "--device cuda requested but CUDA is not available", "use --device cpu"
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise HarnessError(
                f"--device {device}: only {n} CUDA device(s) visible", f"use cuda:0 .. cuda:{n - 1}"
            )


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's CPU thread count for the block (``None``: leave it as it is)."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise HarnessError(f"threads must be at least 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
