"""Train the mini sender / receiver (GPT-NeoX, Pythia-style) on the mini task, on a CPU.

Recipe (see ``harness/mini/README.md``): fresh examples every step (``task.stream_examples``
semantics, one seeded ``random.Random`` per step so a resumed run sees the same data), loss =
per-example mean cross-entropy on the answer tokens (answer + eos) plus ``lm_weight`` times the
full-sequence LM loss on the prompt tokens (it helps copying / induction heads form). Most
batches are QA in the paper's prompt format; some use the relay-receiver format
(``{context}\\nQ: {question}\\nA:``) and some the relay-sender format
(``{context}\\n\\nKey facts:`` followed by the facts), so the natural-language relay condition
has something sensible to carry.

    python -m harness.mini.train --which both
    python -m harness.mini.train --which receiver --minutes 40 --resume
    python -m harness.mini.train --which receiver --device cuda --workers 6 --batch-size 256 \\
        --steps 0 --minutes 7      # schedule sized to fit 7 minutes, measured over the warm-up

On a GPU the batches are built by ``--workers`` processes (``spawn``) ahead of the optimiser;
the batch of step *s* is the same as in-process (it depends only on the seed, *s* and the
curriculum level), so a run is reproducible whatever the number of workers.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.mini import task

__all__ = ["MODEL_SPECS", "ModelSpec", "TrainConfig", "build_model", "main", "train_model"]

log = logging.getLogger(__name__)

MINI_DIR = Path(__file__).resolve().parent
MODELS_DIR = MINI_DIR / "models"
CKPT_DIR = MINI_DIR / ".checkpoints"  # ignored by packaging; resumable training state


@dataclass(frozen=True)
class ModelSpec:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    rotary_pct: float = 0.25


# The receiver is deeper and wider than the sender, as Pythia-410M is over Pythia-160M.
MODEL_SPECS = {
    "sender": ModelSpec(
        hidden_size=96, num_hidden_layers=5, num_attention_heads=4, intermediate_size=384
    ),
    "receiver": ModelSpec(
        hidden_size=128, num_hidden_layers=8, num_attention_heads=4, intermediate_size=512
    ),
}


@dataclass
class TrainConfig:
    which: str = "receiver"
    seed: int = 0
    steps: int = 6000
    minutes: float = 0.0  # wall-clock cap (0: none); the schedule still follows ``steps``
    batch_size: int = 32
    lr: float = 2e-3
    min_lr_frac: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.01
    lm_weight: float = 0.5
    relay_frac: float = 0.2  # share of QA examples in the relay-receiver format
    copy_every: int = 8  # every n-th step is a relay-sender ("Key facts:") batch
    eval_every: int = 200
    ckpt_every: int = 200
    level_up_acc: float = 0.6  # add the next hop count once its held-out accuracy reaches this
    level_max_steps: int = 1500  # ... or after this many steps at the current level
    start_level: int = 1  # lowest curriculum level (hop count) to train on
    final_hop_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)  # 1..4 hops at level 4
    threads: int = 2
    stop_at_acc: float = 0.0  # stop early once held-out accuracy reaches this (0: never)
    device: str = "cpu"
    workers: int = 0  # batch-building processes (0: build batches in-process)
    save_at: tuple[int, ...] = ()  # also save the weights at these steps (a checkpoint ladder)
    save_dir: str = ""  # ... into save_dir/step{NNNNN}/ (save_pretrained folders)


def build_model(which: str, vocab_size: int, *, seed: int = 0) -> Any:
    """A freshly initialised ``GPTNeoXForCausalLM`` for ``which``."""
    import torch
    from transformers import GPTNeoXForCausalLM

    from harness.mini.tokenizer_build import EOS, PAD  # noqa: F401  (ids are 0 / 1)
    from harness.model.arch import make_config

    s = MODEL_SPECS[which]
    # the architecture table's GPT-NeoX (Pythia's structure) at the mini shape
    cfg = make_config(
        "gpt_neox",
        vocab_size=vocab_size,
        hidden_size=s.hidden_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        intermediate_size=s.intermediate_size,
        rotary_pct=s.rotary_pct,
        max_position_embeddings=512,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    torch.manual_seed(seed)  # model init only; data draws use explicit generators
    return GPTNeoXForCausalLM(cfg)


def _hop_weights(level: int, final: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> dict[int, float]:
    """Adaptive curriculum: hops up to ``level``, the newest one weighted double while it is
    new (levels 2-3); at the final level 4 the hop counts get the ``final`` weights."""
    if level >= 4:
        return {h: final[h - 1] for h in range(1, 5)}
    return {h: (2.0 if h == level and level > 1 else 1.0) for h in range(1, level + 1)}


def _make_batch(tok: Any, rng: random.Random, cfg: TrainConfig, step: int, level: int):
    """Token ids, attention mask and answer mask for one step."""
    import torch

    weights = _hop_weights(level, cfg.final_hop_weights)
    hops, w = list(weights), list(weights.values())
    pairs: list[tuple[str, str]] = []
    copy = cfg.copy_every > 0 and step % cfg.copy_every == cfg.copy_every - 1
    n = cfg.batch_size // 2 if copy else cfg.batch_size
    for _ in range(n):
        ex = task.make_example(rng, rng.choices(hops, w)[0])
        if copy:
            pairs.append((ex.context + "\n\nKey facts:", " " + ex.context))
        elif rng.random() < cfg.relay_frac:
            pairs.append((f"{ex.context}\nQ: {ex.question}\nA:", " " + ex.answer))
        else:
            pairs.append((ex.prompt, " " + ex.answer))
    seqs, plen = [], []
    for prompt, target in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        t = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        seqs.append(p + t)
        plen.append(len(p))
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), tok.pad_token_id, dtype=torch.long)
    att = torch.zeros((len(seqs), L), dtype=torch.long)
    ans = torch.zeros((len(seqs), L), dtype=torch.bool)  # positions whose *label* is answer
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
        ans[i, plen[i] - 1 : len(s) - 1] = True
    return ids, att, ans


def _step_rng(cfg: TrainConfig, step: int) -> random.Random:
    """The data of step ``step`` depends only on the seed and the step (and the level)."""
    return random.Random(cfg.seed * 1_000_003 + step)


_WORKER_TOK: Any = None


def _worker_init() -> None:
    global _WORKER_TOK
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers import AutoTokenizer

    from harness.mini.tokenizer_build import TOKENIZER_DIR

    torch.set_num_threads(1)
    _WORKER_TOK = AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def _worker_batch(cfg: TrainConfig, step: int, level: int) -> tuple[Any, Any, Any]:
    ids, att, ans = _make_batch(_WORKER_TOK, _step_rng(cfg, step), cfg, step, level)
    return ids.numpy(), att.numpy(), ans.numpy()


class BatchSource:
    """Batches by step, built in-process or ahead of time by ``cfg.workers`` processes.

    A prefetched batch is keyed by (step, curriculum level); when the level changes, the
    batches built for the old level are dropped and rebuilt, so the data never depends on
    how many workers there are."""

    def __init__(self, tok: Any, cfg: TrainConfig, *, window: int = 0):
        self.tok, self.cfg = tok, cfg
        self.window = window or 4 * max(1, cfg.workers)
        self.pool: ProcessPoolExecutor | None = None
        self.pending: dict[int, tuple[int, Future[Any]]] = {}
        if cfg.workers > 0:
            import multiprocessing

            self.pool = ProcessPoolExecutor(
                cfg.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init,
            )

    def get(self, step: int, level: int) -> tuple[Any, Any, Any]:
        import torch

        if self.pool is None:
            return _make_batch(self.tok, _step_rng(self.cfg, step), self.cfg, step, level)
        for s in list(self.pending):
            if s < step or self.pending[s][0] != level:
                self.pending.pop(s)[1].cancel()
        for s in range(step, step + self.window):
            if s not in self.pending:
                self.pending[s] = (level, self.pool.submit(_worker_batch, self.cfg, s, level))
        arrays = self.pending.pop(step)[1].result()
        return tuple(torch.from_numpy(a) for a in arrays)  # type: ignore[return-value]

    def close(self) -> None:
        if self.pool is not None:
            for _, fut in self.pending.values():
                fut.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> BatchSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loss(model: Any, ids: Any, att: Any, ans: Any, lm_weight: float):
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=att).logits[:, :-1]
    labels = ids[:, 1:]
    ce = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), reduction="none"
    ).view(labels.shape)
    valid = att[:, 1:].bool()
    a = ans[:, :-1]
    per_ex = (ce * a).sum(1) / a.sum(1).clamp(min=1)
    ans_loss = per_ex.mean()
    pm = valid & ~a
    lm_loss = (ce * pm).sum() / pm.sum().clamp(min=1)
    return ans_loss + lm_weight * lm_loss, ans_loss.detach(), lm_loss.detach()


def heldout_examples(n: int = 400, seed: int = 999_331) -> list[task.Example]:
    """Fresh held-out examples (not the frozen eval) for training-time monitoring."""
    rng = random.Random(seed)
    return [task.make_example(rng, 1 + i % 4) for i in range(n)]


def first_token_accuracy(
    model: Any, tok: Any, examples: Sequence[task.Example], batch_size: int = 100
) -> dict[int, float]:
    """Greedy first answer token == gold token, per hop (a fast training-time probe)."""
    import torch

    hits: dict[int, list[int]] = {}
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            enc = tok(
                [e.prompt for e in chunk],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            logits = model(**enc.to(device)).logits[:, -1]
            pred = logits.argmax(-1).tolist()
            for e, p in zip(chunk, pred, strict=True):
                gold = tok(" " + e.answer, add_special_tokens=False)["input_ids"][0]
                hits.setdefault(e.hops, []).append(int(p == gold))
    model.train()
    out = {h: sum(v) / len(v) for h, v in sorted(hits.items())}
    out[0] = sum(sum(v) for v in hits.values()) / sum(len(v) for v in hits.values())
    return out


def _save_ckpt(path: Path, model: Any, opt: Any, step: int, cfg: TrainConfig, level: int) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
            "level": level,
            "cfg": asdict(cfg),
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, data only: ``torch.load(weights_only=True)`` never runs code.

    Anything else (a pickle with objects, a truncated or foreign file) is one line naming it."""
    import torch

    from harness.errors import HarnessError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (not a zip), EOFError, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise HarnessError(
            f"checkpoint {path} is not a data-only training checkpoint ({type(exc).__name__}: "
            f"{first})",
            "delete it and train without --resume (only weights_only checkpoints are loaded)",
        ) from None
    missing = [k for k in ("model", "opt", "step") if not isinstance(state, dict) or k not in state]
    if missing:
        raise HarnessError(
            f"checkpoint {path} lacks {', '.join(missing)}", "delete it and train without --resume"
        )
    return state


def save_final(model: Any, tok: Any, out_dir: Path) -> None:
    """``save_pretrained`` (safetensors) into a temp folder, then swap it in atomically."""
    import shutil

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def train_model(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    out_dir: Path | None = None,
    ckpt_dir: Path = CKPT_DIR,
) -> dict[str, Any]:
    """Train one model; returns a summary (steps, minutes, final held-out accuracy).

    ``cfg.steps == 0`` sizes the schedule to ``cfg.minutes``: the step rate is measured over
    the warm-up (whose learning rates do not depend on the total), and the cosine then runs
    over the steps that fit in 90% of the remaining time. The chosen total is logged and
    checkpointed, so ``--steps N`` with that N reproduces the run."""
    import torch
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from harness.mini.tokenizer_build import TOKENIZER_DIR

    torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device)
    tok = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
    model = build_model(cfg.which, len(tok), seed=cfg.seed).to(device)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=cfg.lr,
        betas=(0.9, 0.98),
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )
    ckpt = ckpt_dir / f"{cfg.which}.pt"
    step = 0
    level = cfg.start_level
    level_since = 0
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        level = max(int(state.get("level", 1)), cfg.start_level)
        level_since = step
        if cfg.steps <= 0:
            cfg.steps = int(state["cfg"]["steps"])
        log.info("resumed %s from step %d (curriculum level %d)", cfg.which, step, level)
    if cfg.steps <= 0 and cfg.minutes <= 0:
        raise ValueError("--steps 0 (fit the schedule to the time) needs --minutes > 0")
    auto_steps = cfg.steps <= 0
    if auto_steps:
        cfg.steps = 1_000_000  # provisional: warm-up lrs ignore it; fixed when the warm-up ends

    def lr_at(s: int) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        p = min(1.0, (s - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
        return cfg.lr * (
            cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p))
        )

    held = heldout_examples()
    out_dir = out_dir or MODELS_DIR / cfg.which
    t0 = time.monotonic()
    t_rate = (0, t0)  # (step, time) where the warm-up rate measurement starts
    acc: dict[int, float] = {}
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.which}", mininterval=5)
    ema = None
    with BatchSource(tok, cfg) as batches:
        while step < cfg.steps:
            ids, att, ans = (t.to(device, non_blocking=True) for t in batches.get(step, level))
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss, a_loss, l_loss = _loss(model, ids, att, ans, cfg.lm_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            bar.update(1)
            if auto_steps and step == min(10, cfg.warmup // 2):
                t_rate = (step, time.monotonic())
            if auto_steps and step == cfg.warmup:
                now = time.monotonic()
                rate = (step - t_rate[0]) / max(1e-9, now - t_rate[1])
                left = cfg.minutes * 60 - (now - t0)
                cfg.steps = step + max(1, int(0.9 * left * rate))
                auto_steps = False
                bar.total = cfg.steps
                log.info(
                    "%s schedule: %.1f steps/s over the warm-up -> %d steps in %.1f min",
                    cfg.which,
                    rate,
                    cfg.steps,
                    cfg.minutes,
                )
            if step % 25 == 0 or step >= cfg.steps:  # one host sync per 25 steps
                a = a_loss.item()
                ema = a if ema is None else 0.6 * ema + 0.4 * a
                bar.set_postfix(ans=f"{ema:.3f}", lm=f"{l_loss.item():.3f}")
            done = step >= cfg.steps
            out_of_time = cfg.minutes > 0 and (time.monotonic() - t0) / 60 >= cfg.minutes
            if step % cfg.eval_every == 0 or done or out_of_time:
                acc = first_token_accuracy(model, tok, held)
                log.info(
                    "%s step %d level %d ans_loss %.3f lm_loss %.3f lr %.2e heldout acc %s "
                    "(%.1f min)",
                    cfg.which,
                    step,
                    level,
                    ema if ema is not None else float("nan"),
                    l_loss.item(),
                    lr_at(step),
                    {k: round(v, 3) for k, v in acc.items()},
                    (time.monotonic() - t0) / 60,
                )
                stuck = step - level_since >= cfg.level_max_steps
                if level < 4 and (acc[level] >= cfg.level_up_acc or stuck):
                    level += 1
                    level_since = step
                    log.info("%s curriculum: now training on 1..%d hops", cfg.which, level)
            if step in cfg.save_at:
                save_final(model, tok, Path(cfg.save_dir) / f"step{step:05d}")
                log.info("%s weights at step %d saved (level %d)", cfg.which, step, level)
            if step % cfg.ckpt_every == 0 or done or out_of_time:
                _save_ckpt(ckpt, model, opt, step, cfg, level)
                save_final(model, tok, out_dir)
            if out_of_time or (cfg.stop_at_acc and acc.get(0, 0.0) >= cfg.stop_at_acc):
                break
    bar.close()
    save_final(model, tok, out_dir)
    minutes = (time.monotonic() - t0) / 60
    log.info("%s saved to %s after %d steps, %.1f min", cfg.which, out_dir, step, minutes)
    return {"which": cfg.which, "steps": step, "minutes": minutes, "heldout_acc": acc}


def main(argv: Sequence[str] | None = None) -> int:
    from harness.text import ArgumentParser, log_handler

    ap = ArgumentParser(prog="harness.mini.train", description=__doc__.split("\n")[0])
    ap.add_argument("--which", choices=("receiver", "sender", "both"), default="both")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimiser steps per model (0: as many as fit in --minutes, measured)",
    )
    ap.add_argument("--minutes", type=float, default=0.0, help="wall-clock cap per model")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument(
        "--workers", type=int, default=0, help="batch-building processes (0: in-process)"
    )
    ap.add_argument("--eval-every", type=int, default=200, help="held-out probe every N steps")
    ap.add_argument(
        "--ckpt-every", type=int, default=200, help="checkpoint and save weights every N steps"
    )
    ap.add_argument(
        "--start-level",
        type=int,
        default=1,
        choices=(1, 2, 3, 4),
        help="train on at least 1..N hops from the start (curriculum floor)",
    )
    ap.add_argument(
        "--hop-weights",
        default="1,1,1,1",
        help="relative weights of 1,2,3,4-hop questions once all hop counts are in",
    )
    ap.add_argument(
        "--save-at",
        default="",
        help="comma list of steps at which the weights are also saved to --save-dir/stepNNNNN",
    )
    ap.add_argument("--save-dir", type=Path, default=None, help="folder of the --save-at weights")
    ap.add_argument("--out-dir", type=Path, default=MODELS_DIR)
    ap.add_argument(
        "--ckpt-dir", type=Path, default=CKPT_DIR, help="checkpoint folder (for --resume too)"
    )
    args = ap.parse_args(argv)
    if args.steps == 0 and args.minutes <= 0:
        ap.error("--steps 0 sizes the schedule to the time budget -- also pass --minutes M")
    try:
        save_at = tuple(int(x) for x in args.save_at.split(",") if x.strip())
    except ValueError:
        ap.error(f"--save-at must be a comma list of step numbers, not {args.save_at!r}")
    if save_at and args.save_dir is None:
        ap.error("--save-at needs --save-dir (where the step folders go)")
    args.save_at = save_at
    if args.workers < 0:
        ap.error(f"--workers must be 0 (in-process) or more, not {args.workers}")
    logging.basicConfig(level=logging.INFO, handlers=[log_handler("%(asctime)s %(message)s")])
    from harness.errors import report_errors

    return report_errors(lambda: _train_all(args))


def _train_all(args: argparse.Namespace) -> int:
    """Train the models ``args`` names (each bad setting is refused before any work)."""
    from harness.model.devices import check_settings

    check_settings(args.device, args.threads)
    default_steps = {"receiver": 5000, "sender": 2500}
    default_lr = {"receiver": 2e-3, "sender": 2e-3}
    whichs = ("receiver", "sender") if args.which == "both" else (args.which,)
    for w in whichs:
        cfg = TrainConfig(
            which=w,
            seed=args.seed,
            steps=default_steps[w] if args.steps is None else args.steps,
            minutes=args.minutes,
            batch_size=args.batch_size,
            lr=args.lr or default_lr[w],
            threads=args.threads,
            device=args.device,
            workers=args.workers,
            eval_every=args.eval_every,
            ckpt_every=args.ckpt_every,
            start_level=args.start_level,
            final_hop_weights=tuple(float(x) for x in args.hop_weights.split(",")),
            save_at=args.save_at,
            save_dir=str(args.save_dir / w) if args.save_at else "",
        )
        train_model(cfg, resume=args.resume, out_dir=args.out_dir / w, ckpt_dir=args.ckpt_dir)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
