"""Ramesh & Li's conditions in the runner: W's texts, the (k, j) layer search, the sources.

"Communicating Activations Between Language Model Agents" (arXiv 2501.14082), Section 3: only
the receiver's last-token state after block j changes, to f(W a, b), with a the sender's
last-token state after block k and f = sum, mean or replace. Here:

- **W** (:func:`harness.model.raw_map.fit_raw_map`): least squares in float64 on the raw
  final-token states of both models reading the same texts (``[translator] texts``, at least
  d_A of them, disjoint from the eval); the identity where the protocol's translator is
  ``identity`` (the sender is the receiver: their same-model setting, no map). The map-free
  ``coords`` conditions combine the last min(d_A, d_B) coordinates instead (their cross-width
  footnote) and fit nothing.
- **Layers**: every (k, j) pair is scored on the translator-training split (disjoint from the
  eval): the receiver reads its own prompt, its last state after block j is replaced by the
  mapped sender state (replace, their headline f, named in advance), and the score is the
  accuracy of the next-token argmax against the gold answer's first token (ties: the mean
  log-probability of that token). The best pair runs the eval. One prefill per pair and row,
  no generation; the grid is cached in the run folder, keyed by everything it reads.
- **Determinism**: W is a deterministic function of the texts, so each condition runs once
  (one file, no seed); the seeds do not resample the texts.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.analysis.evalset import load_evalset
from harness.conditions import Condition, InjectionSpec
from harness.errors import HarnessError
from harness.io import atomic_write_json, sha256_file
from harness.model.activations import batches, capture, left_pad
from harness.model.generate import _returned_cache, cache_keyword
from harness.model.injection import PrefillInjection
from harness.model.models import resolve_block
from harness.model.raw_map import fit_raw_map
from harness.model.translator import Translator
from harness.run.cache import ids_hash, short_hash
from harness.run.records import Generated, JobExtras

if TYPE_CHECKING:
    from harness.run.roles import Direction as _Direction
    from harness.run.roles import Role

__all__ = ["SEARCH_METRIC", "blocks", "inject_ramesh_li", "last_states", "load_texts"]

log = logging.getLogger(__name__)
SEARCH_METRIC = (
    "first answer token accuracy (next-token argmax) with the receiver's last state after "
    "block j replaced by the mapped sender state after block k, on the translator-training "
    "split; ties broken by the mean log-probability of that token"
)
DETERMINISM = (
    "deterministic map (float64 least squares on fixed texts, the identity, or no map): run "
    "once, no seed; the seeds do not resample W's texts"
)
SEARCH_VERSION = 1  # bumped when the search's scoring changes (old cache entries unread)


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every transformer block of ``model`` as (site name, module), in depth order."""
    config: Any = getattr(model, "config", None)
    if config is None:
        raise HarnessError(f"{type(model).__name__} has no config: not a transformers model")
    n = int(config.num_hidden_layers)
    out = []
    for i in range(n):
        site, module, idx = resolve_block(model, (i + 0.5) / n)
        assert idx == i
        out.append((site, module))
    return out


def last_states(
    model: nn.Module,
    modules: Sequence[nn.Module],
    ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    batch_size: int,
) -> list[torch.Tensor]:
    """The last prompt position's output of each of ``modules`` over ``ids``: one
    ``[len(ids), d]`` float32 CPU tensor per module, rows in input order (one forward per
    batch, every module hooked at once)."""
    device = next(model.parameters()).device
    order: list[int] = []
    sinks: list[list[torch.Tensor]] = [[] for _ in modules]

    def hook(i: int) -> Callable[..., None]:
        def fn(_m: nn.Module, _a: Any, output: Any) -> None:
            h = output if isinstance(output, torch.Tensor) else output[0]
            sinks[i].append(h[:, -1].detach().float().cpu())

        return fn

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        with torch.inference_mode():
            for idx in batches(ids, batch_size):
                t_ids, mask, pos = left_pad([ids[i] for i in idx], pad_id, device)
                model(input_ids=t_ids, attention_mask=mask, position_ids=pos, use_cache=False)
                order += idx
    finally:
        for h in handles:
            h.remove()
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return [torch.cat(sink)[inverse] for sink in sinks]


def load_texts(path: Path) -> tuple[list[str], str]:
    """The ``text`` field of every row of the JSONL at ``path``, and the file's SHA-256."""
    if not path.is_file():
        raise HarnessError(
            f"[translator] texts file not found: {path}",
            'point [translator] texts at a JSONL of {"text": ...} rows (for the mini pair: '
            "python -m harness.mini.task writes harness/mini/data/map_texts.jsonl)",
        )
    texts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            texts.append(str(row["text"]))
        except (ValueError, KeyError, TypeError):
            raise HarnessError(
                f'{path} line {n}: not a JSON object with a "text" field',
                'write one {"text": ...} object per line',
            ) from None
    return texts, sha256_file(path)


@dataclass
class _Search:
    """One map kind's chosen blocks, its fitted map there and the grid record."""

    k: int
    j: int
    record: dict[str, Any]
    fit: Callable[[int, int], Translator | None]


@dataclass
class _Setup:
    """What every Ramesh & Li condition of one direction shares (computed once)."""

    sender_blocks: list[tuple[str, nn.Module]]
    receiver_blocks: list[tuple[str, nn.Module]]
    texts_record: dict[str, Any]
    searches: dict[str, _Search]


def _coords_vector(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    """The source vector that makes ``mode`` combine the last min(d_A, d_B) coordinates:
    additive adds ``a``'s last m to ``b``'s last m; mean / replace keep ``b``'s other
    coordinates and average with / replace its last m."""
    m = min(a.shape[-1], b.shape[-1])
    src = torch.zeros_like(b) if mode == "additive" else b.clone()
    src[..., -m:] = a[..., -m:].to(src.dtype)
    return src


def _setup(run: Any, d: _Direction) -> _Setup:
    """``run``: the runner's ``_Run`` (its protocol, encoder, caches and timings)."""
    if d.ramesh_li is not None:
        return d.ramesh_li
    p = run.p
    sender, receiver = d.sender, d.receiver
    if not p.translator.texts:
        raise HarnessError(
            f"protocol {p.name} lists Ramesh & Li conditions but [translator] texts is empty",
            'set [translator] texts to a JSONL of at least d_A {"text"} rows disjoint from '
            "the eval, or drop the rl_* conditions from [run]",
        )
    path = p.resolve_path(p.translator.texts, run.artifact)
    texts, texts_sha = load_texts(path)
    if len(texts) < sender.width:
        raise HarnessError(
            f"{path} holds {len(texts)} texts, fewer than the sender's width {sender.width}",
            "Ramesh & Li fit W on at least d_A texts: add texts",
        )
    identity = p.translator.method == "identity"
    if identity and sender.width != receiver.width:
        raise HarnessError(
            f"translator method identity with widths {sender.width} -> {receiver.width}",
            "use identity only where the sender is the receiver",
        )
    t0 = time.perf_counter()
    sb, rb = blocks(sender.model), blocks(receiver.model)
    text_a, text_b = _pair_last_states(
        run, d, sb, rb, run.encode(texts, sender.tokenizer), run.encode(texts, receiver.tokenizer)
    )
    val_frac = p.translator.val_frac

    def fit_w(k: int, j: int) -> Translator:
        return fit_raw_map(text_a[k], text_b[j], method="identity" if identity else "lstsq",
                           val_frac=val_frac)  # fmt: skip

    fits: dict[str, Callable[[int, int], Translator | None]] = {"raw_map": fit_w}
    if sender.width != receiver.width:
        fits["coords"] = lambda k, j: None
    searches = {kind: _search(run, d, sb, rb, kind, fit, texts_sha) for kind, fit in fits.items()}
    record = {
        "texts": p.translator.texts,
        "texts_sha256": texts_sha,
        "n_texts": len(texts),
        "sender_width": sender.width,
        "receiver_width": receiver.width,
    }
    # W's fit at each chosen pair, on the held-out texts; their Adam recipe beside it
    for s in searches.values():
        w = s.fit(s.k, s.j)
        if w is None:
            continue
        s.record["map"] = {"method": w.config.method, **_rounded(w.metrics)}
        if not identity:
            adam = fit_raw_map(text_a[s.k], text_b[s.j], method="adam", val_frac=val_frac)
            s.record["map"]["adam_raw_r2"] = round(adam.metrics["raw_r2"], 6)
            s.record["map"]["adam_norm_ratio"] = round(adam.metrics["norm_ratio"], 6)
    run.timings["ramesh_li_setup_s"] = time.perf_counter() - t0
    d.ramesh_li = _Setup(sb, rb, record, searches)
    return d.ramesh_li


def _pair_last_states(
    run: Any,
    d: _Direction,
    sb: list[tuple[str, nn.Module]],
    rb: list[tuple[str, nn.Module]],
    ids_a: list[list[int]],
    ids_b: list[list[int]],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The sender's last-token states after each of ``sb`` on ``ids_a``, and the receiver's
    after each of ``rb`` on ``ids_b`` (sender first)."""
    a = last_states(d.sender.model, [m for _, m in sb], ids_a, pad_id=d.sender.pad_id,
                    batch_size=run.bs)  # fmt: skip
    b = last_states(d.receiver.model, [m for _, m in rb], ids_b, pad_id=d.receiver.pad_id,
                    batch_size=run.bs)  # fmt: skip
    return a, b


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()}


def _search(
    run: Any,
    d: _Direction,
    sb: list[tuple[str, nn.Module]],
    rb: list[tuple[str, nn.Module]],
    kind: str,
    fit: Callable[[int, int], Translator | None],
    texts_sha: str,
) -> _Search:
    """Score every (k, j) for ``kind`` on the selection split (cached), keep the best."""
    p = run.p
    sender, receiver = d.sender, d.receiver
    rows = load_evalset(p.translator_train_path(run.artifact)).rows
    cap = p.translator.max_train_prompts
    if run.train_limit is not None:
        cap = min(cap, run.train_limit)
    rows = rows[:cap]
    ids_a = run.encode(run.prompts(rows), sender.tokenizer)
    ids_b = run.encode(run.prompts(rows, receiver=True), receiver.tokenizer)
    tok = receiver.tokenizer
    gold = [tok(" " + r.answer, add_special_tokens=False)["input_ids"][0] for r in rows]
    key = short_hash(
        "|".join(
            [
                str(SEARCH_VERSION), kind, p.hash, run._init_tag, d.tok_tag, d.direction,
                # the weights, tokenizer and training file it was scored from (run/inputs.py)
                run.cache.inputs.translator_tag if run.cache.inputs is not None else "",
                texts_sha, ids_hash(ids_a), ids_hash(ids_b), str(sender.width),
                str(receiver.width), ",".join(s for s, _ in sb), ",".join(s for s, _ in rb),
            ]
        )
    )  # fmt: skip
    path = run.out / ".cache" / "ramesh_li" / p.hash / f"search-{kind}-{d.direction}-{key}.json"
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            grid = json.loads(path.read_text(encoding="utf-8"))
        else:
            grid = _score_grid(run, d, sb, rb, kind, fit, ids_a, ids_b, gold)
            atomic_write_json(path, grid)
    acc, lp = grid["accuracy"], grid["answer_logprob"]
    k, j = max(
        ((k, j) for k in range(len(sb)) for j in range(len(rb))),
        key=lambda kj: (acc[kj[0]][kj[1]], lp[kj[0]][kj[1]], -kj[0], -kj[1]),
    )
    record = {
        "kind": kind,
        "split": p.eval.translator_train_path,
        "n_rows": len(rows),
        "metric": SEARCH_METRIC,
        "f": "replace",
        "sender_sites": [s for s, _ in sb],
        "receiver_sites": [s for s, _ in rb],
        **grid,
        "chosen": [k, j],
    }
    log.info("Ramesh & Li %s layer search: k=%d j=%d (accuracy %.3f)", kind, k, j, acc[k][j])
    return _Search(k, j, record, fit)


class _Prefixes:
    """The receiver's KV cache over every prompt but its last token, one entry per batch:
    the last position is then the only one a last-token injection at block j changes (the
    model is causal), so each (k, j) is scored with a one-token forward on a copy of it."""

    def __init__(self, role: Role, ids: list[list[int]], bs: int) -> None:
        self.role = role
        self.device = next(role.model.parameters()).device
        self.batches = []
        with torch.inference_mode():
            for idx in batches(ids, bs):
                t_ids, mask, pos = left_pad([ids[i] for i in idx], role.pad_id, self.device)
                out = role.model(
                    input_ids=t_ids[:, :-1], attention_mask=mask[:, :-1],
                    position_ids=pos[:, :-1], use_cache=True,
                )  # fmt: skip
                self.batches.append((idx, t_ids, mask, pos, _returned_cache(out)))

    def scores(
        self, module: nn.Module | None, vectors: torch.Tensor | None, gold: list[int]
    ) -> tuple[float, float]:
        """(accuracy of the next-token argmax against ``gold``, mean log-prob of ``gold``),
        with ``vectors`` replacing ``module``'s output at the last position (None: clean)."""
        spec = InjectionSpec("replace", positions="last")
        cache_kw = cache_keyword(self.role.model)
        hits, logp, n = 0.0, 0.0, 0
        with torch.inference_mode():
            for idx, t_ids, mask, pos, cache in self.batches:
                kwargs = dict(
                    input_ids=t_ids[:, -1:], attention_mask=mask, position_ids=pos[:, -1:],
                    use_cache=True, **{cache_kw: copy.deepcopy(cache)},
                )  # fmt: skip
                if module is None or vectors is None:
                    logits = self.role.model(**kwargs).logits
                else:
                    src = vectors[idx].unsqueeze(1).to(self.device)
                    one = torch.ones(len(idx), 1, dtype=mask.dtype)
                    with PrefillInjection(module, spec, src, one):
                        logits = self.role.model(**kwargs).logits
                lsm = torch.log_softmax(logits[:, -1].float(), dim=-1).cpu()
                g = torch.tensor([gold[i] for i in idx])
                hits += float((lsm.argmax(-1) == g).sum())
                logp += float(lsm.gather(1, g[:, None]).sum())
                n += len(idx)
        return hits / n, logp / n


def _search_batch(role: Role, ids: list[list[int]], bs: int, budget: float = 2**29) -> int:
    """Rows per scoring batch: up to 128 while the prefix KV cache stays under ``budget``
    bytes (one-token forwards are overhead-bound, so wide batches pay), at least ``bs``."""
    cfg = role.model.config
    per_row = max(len(t) for t in ids) * cfg.num_hidden_layers * 2 * role.width * 4
    return max(bs, min(128, int(budget // per_row)))


def _score_grid(
    run: Any,
    d: _Direction,
    sb: list[tuple[str, nn.Module]],
    rb: list[tuple[str, nn.Module]],
    kind: str,
    fit: Callable[[int, int], Translator | None],
    ids_a: list[list[int]],
    ids_b: list[list[int]],
    gold: list[int],
) -> dict[str, Any]:
    t0 = time.perf_counter()
    receiver = d.receiver
    a_all, b_all = _pair_last_states(run, d, sb, rb, ids_a, ids_b)
    prefixes = _Prefixes(receiver, ids_b, _search_batch(receiver, ids_b, run.bs))
    base = prefixes.scores(None, None, gold)
    acc = [[0.0] * len(rb) for _ in sb]
    lp = [[0.0] * len(rb) for _ in sb]
    for k in range(len(sb)):
        for j, (_, module) in enumerate(rb):
            w = fit(k, j)
            vec = w(a_all[k]) if w is not None else _coords_vector(a_all[k], b_all[j], "replace")
            acc[k][j], lp[k][j] = prefixes.scores(module, vec, gold)
    return {
        "accuracy": [[round(x, 6) for x in row] for row in acc],
        "answer_logprob": [[round(x, 6) for x in row] for row in lp],
        "no_inject_accuracy": round(base[0], 6),
        "no_inject_answer_logprob": round(base[1], 6),
        "search_seconds": round(time.perf_counter() - t0, 3),
    }


def inject_ramesh_li(
    run: Any, cond: Condition, spec: InjectionSpec, d: _Direction, bar: Any
) -> tuple[Generated, JobExtras]:
    """Generate with one of Ramesh & Li's conditions at its searched blocks."""
    plan = cond.plan
    assert plan is not None and plan.translator in ("raw_map", "coords") and plan.last_token
    kind = plan.translator
    setup = _setup(run, d)
    if kind not in setup.searches:
        raise HarnessError(
            f"{cond.name} combines the last min(d_A, d_B) coordinates, which Ramesh & Li use "
            f"only where the widths differ (here both are {d.sender.width})",
            f"drop {cond.name} from this protocol's [run] lists",
        )
    s = setup.searches[kind]
    sender, receiver = d.sender, d.receiver
    (site_a, mod_a), (site_b, mod_b) = setup.sender_blocks[s.k], setup.receiver_blocks[s.j]
    a = capture(sender.model, mod_a, sender.ids, site=site_a, pad_id=sender.pad_id,
                batch_size=run.bs)  # fmt: skip
    a_last = torch.stack([x[-1] for x in a.states])
    w = s.fit(s.k, s.j)
    if w is not None:
        vec = w(a_last)
        shown = vec
    else:  # the native state at block j, exactly as the generation prefill computes it
        b = capture(receiver.model, mod_b, receiver.ids, site=site_b, pad_id=receiver.pad_id,
                    batch_size=run.bs)  # fmt: skip
        b_last = torch.stack([x[-1] for x in b.states])
        vec = _coords_vector(a_last, b_last, spec.mode)
        shown = a_last[:, -min(sender.width, receiver.width) :]
    sources = []
    for v, ids in zip(vec, receiver.ids, strict=True):
        src = torch.zeros(len(ids), v.shape[-1])
        src[-1] = v
        sources.append(src)
    n = len(run.rows)
    preds, stats = run.generate(receiver, receiver.ids, spec, sources, bar=bar, module=mod_b)
    gen = Generated(
        preds,
        list(range(n)),
        translated_norm=[float(x) for x in shown.norm(dim=-1)],
        b_hidden_norm=stats["b_hidden_norm"],
        injected_norm=stats["injected_norm"],
    )
    extras = JobExtras(
        ramesh_li={
            "method": "coords" if w is None else w.config.method,
            "f": {"additive": "sum", "mean": "mean", "replace": "replace"}[spec.mode],
            "layer_a": site_a,
            "layer_b": site_b,
            "k": s.k,
            "j": s.j,
            **setup.texts_record,
            "coordinates": min(sender.width, receiver.width) if w is None else None,
            "determinism": DETERMINISM,
            "layer_search": {k: v for k, v in s.record.items() if k != "map"},
            "map": s.record.get("map"),
        }
    )
    return gen, extras
