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
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from harness import events
from harness.analysis.evalset import EvalRow, load_evalset
from harness.analysis.results import write_result_file
from harness.conditions import CONDITIONS, Condition
from harness.errors import HarnessError
from harness.model.activations import Activations, capture, check_finite
from harness.model.generate import GenerationSettings, decode_new, generate_tokens
from harness.model.injection import (
    InjectionSpec,
    PrefillInjection,
    pad_sources,
)
from harness.model.models import ModelPair, load_pair
from harness.model.plans import build_sources
from harness.protocol import Protocol, load_protocol
from harness.run.cache import RunCache, ids_hash, short_hash
from harness.run.inputs import run_inputs
from harness.run.records import (
    Generated,
    Job,
    JobExtras,
    build_result,
    check_token_match,
    provenance,
)
from harness.run.roles import Direction, Role
from harness.run.translators import TranslatorStage
from harness.spec.jobs import Group, left_out
from harness.spec.jobs import jobs as grid_jobs

__all__ = ["Job", "Role", "RunOptions", "check_token_match", "run_protocol"]

_Direction = Direction  # the name the stages used before roles.py

log = logging.getLogger(__name__)


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
        self.cache = RunCache(out_dir, protocol)
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
        self.translators = TranslatorStage(self)
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

    @property
    def _init_tag(self) -> str:
        return self.pair.init if self.pair.init == "pretrained" else f"random{self.init_seed}"

    def direction(self, name: str) -> _Direction:
        if name not in self.dirs:
            sender, s_name, receiver, r_name = self.pair.oriented(name)
            tok_a, tok_b = self.pair.tokenizers(name)
            decoding = self.p.decoding

            def role(kind: str, model: Any, model_name: str, tok: Any) -> Role:
                site, module, _ = self.pair.block_of(model)
                receiver_side = kind == "receiver"
                return Role(
                    kind,
                    model_name,
                    model,
                    site,
                    module,
                    tok,
                    ids=self.encode(self.prompts(self.rows, receiver=receiver_side), tok),
                    settings=GenerationSettings.from_protocol(
                        decoding, tok, relay=not receiver_side
                    ),
                )

            self.dirs[name] = _Direction(
                name,
                sender=role("sender", sender, s_name, tok_a),
                receiver=role("receiver", receiver, r_name, tok_b),
            )
        return self.dirs[name]

    def capture(self, role: Role, ids: list[list[int]], labels: Sequence[str]) -> Activations:
        """``role``'s block outputs over ``ids``, computed once per output folder (the
        activation cache of :class:`~harness.run.cache.RunCache`, under a file lock, so
        processes that share the folder capture each set once and a resumed run reloads it)."""
        tag = short_hash(f"{role.name}|{role.site}|{role.pad_id}|{self.bs}")
        t0 = time.perf_counter()

        def compute() -> Activations:
            acts = capture(
                role.model, role.module, ids, site=role.site, pad_id=role.pad_id,
                batch_size=self.bs,
            )  # fmt: skip
            check_finite(acts.states, what=f"{role.kind} activations", site=role.site,
                         labels=labels)  # fmt: skip
            return acts

        acts, computed = self.cache.activations(role.site, f"{self._init_tag}-{tag}", ids, compute)
        if computed:
            events.record(
                "activations", key=f"{self.p.hash}:{role.site}:{len(ids)}:{ids_hash(ids)}"
            )
            self.timings["capture_s"] = (
                self.timings.get("capture_s", 0.0) + time.perf_counter() - t0
            )
        return acts

    def states(self, role: Role) -> Activations:
        """``role``'s block outputs over the eval prompts it reads (captured once)."""
        if role.states is None:
            role.states = self.capture(role, role.ids, [r.sample_id for r in self.rows])
        return role.states

    # -- generation ----------------------------------------------------------------------
    def generate(
        self,
        role: Role,
        ids: list[list[int]],
        spec: InjectionSpec | None = None,
        sources: Sequence[torch.Tensor] | None = None,
        bar: Any = None,
        module: nn.Module | None = None,
    ) -> tuple[list[str], dict[str, list[float]]]:
        """``role``'s greedy continuations of ``ids`` (decoded new text), with ``sources``
        injected at its block (or at ``module``) by ``spec`` on the prefill, and the hook's
        per-sample norms."""
        hooks: list[tuple[list[int], PrefillInjection]] = []

        def factory(idx: list[int], mask: torch.Tensor) -> PrefillInjection:
            assert spec is not None and sources is not None
            src = pad_sources([sources[i] for i in idx], mask.shape[1])
            if spec.positions == "last":  # left padded: the last column is each last token
                mask = torch.zeros_like(mask)
                mask[:, -1] = 1
            hook = PrefillInjection(role.module if module is None else module, spec, src, mask)
            hooks.append((idx, hook))
            return hook

        new = generate_tokens(
            role.model,
            ids,
            role.settings,
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
        return [decode_new(role.tokenizer, t) for t in new], stats

    # -- one result file -----------------------------------------------------------------
    def run_job(self, job: Job, bar: Any = None) -> Path:
        cond = CONDITIONS[job.condition]
        d = self.direction(job.direction)
        t0 = time.perf_counter()
        if cond.sequence_level:
            check_token_match(self.rows, d.sender.ids, d.receiver.ids)
        extras = JobExtras()
        spec = None
        if cond.relay:
            gen = self._relay(d, bar)
        elif cond.plan is None:
            preds, _ = self.generate(d.receiver, d.receiver.ids, bar=bar)
            gen = Generated(preds, list(range(len(self.rows))))
        else:
            spec = cond.plan.spec(self.p)
            gen, extras = self._inject(cond, spec, job, d, bar)
        elapsed = time.perf_counter() - t0
        data = build_result(
            self.p,
            job,
            cond,
            d.sender,
            d.receiver,
            self.rows,
            gen,
            extras,
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
        if self.cache.inputs is not None:  # what this file was computed from (resume checks)
            data["provenance"]["inputs"] = self.cache.inputs.to_dict()
        path = write_result_file(self.out, data)
        events.record("result_file", key=f"{self.p.hash}:{path.name}")
        return path

    def _relay(self, d: _Direction, bar: Any) -> Generated:
        tpl = self.p.prompt.relay_sender_template
        sender_ids = self.encode(
            [tpl.format(context=r.context) for r in self.rows], d.sender.tokenizer
        )
        relays, _ = self.generate(d.sender, sender_ids)
        rtpl = self.p.prompt.relay_receiver_template
        texts = [
            rtpl.format(relay=rel, question=r.question)
            for rel, r in zip(relays, self.rows, strict=True)
        ]
        recv_ids = self.encode(texts, d.receiver.tokenizer)
        preds, _ = self.generate(d.receiver, recv_ids, bar=bar)
        return Generated(
            preds,
            list(range(len(self.rows))),
            relay=relays,
            sender_prompt_len=[len(t) for t in sender_ids],
            prompt_len_b=[len(t) for t in recv_ids],
        )

    def _inject(
        self, cond: Condition, spec: InjectionSpec, job: Job, d: _Direction, bar: Any
    ) -> tuple[Generated, JobExtras]:
        """Generate with ``cond``'s plan: gather the states it injects, then run ``spec``."""
        plan = cond.plan
        assert plan is not None
        if plan.translator in ("raw_map", "coords"):  # Ramesh & Li's own blocks and map
            from harness.run.ramesh_li import inject_ramesh_li

            return inject_ramesh_li(self, cond, spec, d, bar)
        receiver = d.receiver
        lengths = [len(t) for t in receiver.ids]
        extras = JobExtras()
        causal = plan.translator == "causal"

        def translated() -> list[torch.Tensor]:
            if causal:
                tr, ckpt = self.translators.causal(d, _seed(job), cond.name)
            else:
                tr, ckpt = self.translators.linear(d, _seed(job))
            extras.checkpoint = ckpt
            extras.translator = {
                "seed": job.seed,
                "direction": job.direction,
                "method": tr.config.method,
                **tr.metrics,
            }
            out = [tr(s) for s in self.states(d.sender).states]
            check_finite(
                out,
                what="translator output",
                site=f"{d.sender.site} -> {receiver.site} ({ckpt})",
                labels=[r.sample_id for r in self.rows],
                fix="the translator is numerically broken: delete it from the translator "
                "cache to refit it, and check the sender activations",
            )
            return out

        planned = build_sources(
            plan,
            spec,
            lengths,
            receiver.width,
            job.seed,
            receiver_states=lambda: self.states(receiver).states,
            translated=translated,
        )
        extras.shuffle = planned.shuffle
        idx, sources = planned.idx, planned.sources
        shown = planned.reported  # what the file reports as translated
        ids = [receiver.ids[i] for i in idx]
        preds, stats = self.generate(receiver, ids, spec, sources, bar=bar)
        tnorm = [
            float(s.float().norm(dim=-1).mean()) if s.shape[0] else 0.0
            for s in (sources if shown is None else shown)
        ]
        gen = Generated(
            preds,
            idx,
            translated_norm=tnorm,
            b_hidden_norm=stats["b_hidden_norm"],
            injected_norm=stats["injected_norm"],
        )
        return gen, extras


def _seed(job: Job) -> int:
    assert job.seed is not None
    return job.seed


@dataclass(frozen=True)
class RunOptions:
    """How to run a protocol (everything but the protocol and the output folder).

    conditions / seeds / directions: a subset of the protocol's (None: all of them);
    ``include_strict`` / ``include_appendix`` / ``include_extension`` add those groups when
    ``conditions`` is None. limit: the first N eval rows (smoke runs). device: ``cpu``,
    ``cuda``, ``cuda:N``. init: ``pretrained`` or ``random`` (seeded with ``init_seed``;
    ``tokenizer`` then names one). batch_size: generation batch (None: the protocol's;
    ``"auto"``: the largest that fits the device's free memory, the protocol's on a CPU; see
    :func:`harness.model.devices.auto_batch_size`). Results do not depend on it.
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
    batch_size: int | Literal["auto"] | None = None
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
    groups: list[Group] = ["primary"]
    groups += ["strict"] if o.include_strict else []
    groups += ["extension"] if o.include_extension else []
    groups += ["appendix"] if o.include_appendix else []
    jobs = grid_jobs(proto, groups, conditions=o.conditions, seeds=o.seeds, directions=o.directions)
    skipped = left_out(proto) if o.conditions is None else {}
    if skipped:  # one line; the claims that need them skip with the whole reason
        log.info("left out: %s (%s)", ", ".join(skipped), next(iter(skipped.values())))
    evalset = load_evalset(proto.eval_path(o.artifact), proto.eval.sha256)
    rows = evalset.rows[: o.limit] if o.limit is not None else evalset.rows
    inputs = run_inputs(
        proto,
        eval_sha256=evalset.sha256,
        artifact=o.artifact,
        init=o.init,
        init_seed=o.init_seed,
        tokenizer=o.tokenizer,
        train_limit=o.train_limit,
    )
    cache = RunCache(out, proto, inputs)
    todo = [j for j in jobs if not cache.has_result(j.filename)]
    for j in jobs:
        if j not in todo:
            cache.check_result(j.filename, len(rows))
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
            batch_size=_batch_size(o.batch_size, proto, pair, o.device, len(rows)),
            artifact=o.artifact,
            train_limit=o.train_limit,
            use_cache=o.use_cache,
            init_seed=o.init_seed,
        )
        run.cache = cache  # keyed by the inputs' fingerprints
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


def _batch_size(
    requested: int | str | None, proto: Protocol, pair: ModelPair, device: str, n_rows: int
) -> int:
    """The generation batch: as requested, the protocol's, or with ``"auto"`` the largest
    that fits the device (the prompt length at the protocol's truncation cap, the longer of
    the answer and relay budgets)."""
    from harness.model.devices import auto_batch_size, device_free_bytes

    if requested is None:
        return proto.run.batch_size
    if requested != "auto":
        if not isinstance(requested, int) or isinstance(requested, bool) or requested < 1:
            raise HarnessError(
                f"batch size must be a positive integer or 'auto', got {requested!r}",
                "e.g. --batch-size 32 or --batch-size auto",
            )
        return requested
    dec = proto.decoding
    size = auto_batch_size(
        [pair.sender.config, pair.receiver.config],
        n_rows=n_rows,
        prompt_len=proto.prompt.max_length,
        new_tokens=max(dec.max_new_tokens, dec.relay_max_new_tokens),
        free_bytes=device_free_bytes(device),
        fallback=proto.run.batch_size,
    )
    log.info("batch size auto on %s: %d", device, size)
    return size


def _run_shared(run: _Run, out: Path, todo: Sequence[Job], bar: Any) -> None:
    """Run the jobs no other process has claimed, then wait for (or take over) the rest."""

    def claim(job: Job, wait: bool) -> bool:
        with run.cache.claim(job.filename, wait=wait) as held:
            if held and not run.cache.has_result(job.filename):  # not finished elsewhere
                bar.set_postfix_str(job.filename, refresh=False)
                run.run_job(job, bar)
        return held

    deferred = [job for job in todo if not claim(job, wait=False)]
    for job in deferred:  # being written elsewhere: wait; recompute if that process died
        claim(job, wait=True)


def _check_device(device: str) -> None:
    """Refuse an unknown or absent device before any model is loaded."""
    from harness.model.devices import check_device

    check_device(device)


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
