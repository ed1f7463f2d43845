"""No-injection accuracy of the mini pair on the mini clean eval, per hop, with chance rates.

Uses the protocol's prompt format and decoding (greedy, repetition penalty 1.3, no-repeat
3-gram, 64 new tokens), batched ``model.generate`` with left padding, and the primary metric
``harness.analysis.metrics.word_boundary_contains``. Chance is 1 / (distinct same-type entities in the
context), averaged over rows.

    python -m harness.mini.evaluate            # both models, protocol decoding
    python -m harness.mini.evaluate --which receiver --max-new-tokens 8
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.analysis.metrics import word_boundary_contains

__all__ = ["evaluate_model", "format_report", "load_rows", "main"]

log = logging.getLogger(__name__)


def load_rows(protocol: Any) -> list[dict[str, Any]]:
    """The mini eval rows (SHA-256 checked against the protocol)."""
    from harness.analysis.evalset import load_evalset

    es = load_evalset(protocol.eval_path(), protocol.eval.sha256)
    return [
        {
            "context": r.context,
            "question": r.question,
            "answer": r.answer,
            "hops": r.hops,
            "sample_id": r.sample_id,
            **r.extra,
        }
        for r in es.rows
    ]


def evaluate_model(
    model: Any,
    tok: Any,
    rows: Sequence[dict[str, Any]],
    *,
    template: str = "Context: {context}\nQ: {question}\nA:",
    max_new_tokens: int = 64,
    repetition_penalty: float = 1.3,
    no_repeat_ngram_size: int = 3,
    max_length: int = 256,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Greedy-decode every row; return accuracy and chance overall and per hop."""
    import torch

    tok.padding_side = "left"
    model.eval()
    preds: list[str] = []
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            prompts = [template.format(context=r["context"], question=r["question"]) for r in chunk]
            enc = tok(
                prompts, return_tensors="pt", padding=True, truncation=True, max_length=max_length
            )
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=repetition_penalty,
                no_repeat_ngram_size=no_repeat_ngram_size,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            new = out[:, enc["input_ids"].shape[1] :]
            preds.extend(t.strip() for t in tok.batch_decode(new, skip_special_tokens=True))
    per_hop: dict[str, dict[str, float]] = {}
    correct = [word_boundary_contains(p, r["answer"]) for p, r in zip(preds, rows, strict=True)]
    chance = [1.0 / max(1, int(r.get("n_candidates", 1))) for r in rows]
    for h in sorted({int(r["hops"]) for r in rows}):
        idx = [j for j, r in enumerate(rows) if int(r["hops"]) == h]
        per_hop[str(h)] = {
            "n": len(idx),
            "accuracy": sum(correct[j] for j in idx) / len(idx),
            "chance": sum(chance[j] for j in idx) / len(idx),
        }
    per_type: dict[str, dict[str, float]] = {}
    for t in sorted({str(r.get("entity_type", "")) for r in rows}):
        idx = [j for j, r in enumerate(rows) if str(r.get("entity_type", "")) == t]
        per_type[t] = {
            "n": len(idx),
            "accuracy": sum(correct[j] for j in idx) / len(idx),
            "chance": sum(chance[j] for j in idx) / len(idx),
        }
    return {
        "n": len(rows),
        "per_type": per_type,
        "accuracy": sum(correct) / len(rows),
        "chance": sum(chance) / len(rows),
        "per_hop": per_hop,
        "decoding": {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "repetition_penalty": repetition_penalty,
            "no_repeat_ngram_size": no_repeat_ngram_size,
        },
        "examples": [
            {"id": r["sample_id"], "pred": p, "gold": r["answer"]}
            for r, p in list(zip(rows, preds, strict=True))[:8]
        ],
    }


def format_report(name: str, res: dict[str, Any]) -> str:
    lines = [
        f"{name}: word-boundary accuracy {res['accuracy']:.3f} (chance {res['chance']:.3f},"
        f" n={res['n']})"
    ]
    for h, d in res["per_hop"].items():
        lines.append(f"  {h}-hop: {d['accuracy']:.3f} (chance {d['chance']:.3f}, n={d['n']})")
    for t, d in res.get("per_type", {}).items():
        lines.append(f"  answer {t}: {d['accuracy']:.3f} (chance {d['chance']:.3f}, n={d['n']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.protocol import load_protocol

    ap = argparse.ArgumentParser(prog="harness.mini.evaluate")
    ap.add_argument("--which", choices=("receiver", "sender", "both"), default="both")
    ap.add_argument("--protocol", default="mini")
    ap.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap the answer budget (default: the protocol's)",
    )
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N rows")
    ap.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--models-dir", type=Path, default=None, help="read DIR/sender and DIR/receiver instead"
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    proto = load_protocol(args.protocol)
    rows = load_rows(proto)
    if args.limit:
        rows = rows[: args.limit]
    tok = AutoTokenizer.from_pretrained(
        proto.resolve_path(proto.models.tokenizer), trust_remote_code=False
    )
    dec = proto.decoding
    results = {}
    whichs = ("sender", "receiver") if args.which == "both" else (args.which,)
    for w in whichs:
        path = (
            args.models_dir / w if args.models_dir else proto.resolve_path(getattr(proto.models, w))
        )
        model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=False, weights_only=True
        )
        res = evaluate_model(
            model,
            tok,
            rows,
            template=proto.prompt.template,
            max_new_tokens=args.max_new_tokens or dec.max_new_tokens,
            repetition_penalty=dec.repetition_penalty,
            no_repeat_ngram_size=dec.no_repeat_ngram_size,
            max_length=proto.prompt.max_length,
        )
        res["params"] = sum(p.numel() for p in model.parameters())
        results[w] = res
        log.info("%s", format_report(w, res))
    if args.json:
        from harness.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
