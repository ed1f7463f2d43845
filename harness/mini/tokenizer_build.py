"""Build the mini pair's shared word-level tokenizer (``harness/mini/tokenizer/``).

Pieces carry their leading space (`` Quenrith``), every relation phrase is one piece
(`` is on the continent of``), and the decoder simply concatenates pieces, so decoding is the
exact inverse of encoding for any text made of known words. Every invented name is a single
token, with and without its leading space. Saved as a ``PreTrainedTokenizerFast`` so
``AutoTokenizer.from_pretrained(dir)`` loads it; ``<|endoftext|>`` is bos and eos,
``<|padding|>`` pads (left padding works), ``<|unk|>`` catches unknown words.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from harness.mini import task

__all__ = ["BOS", "EOS", "PAD", "SPLIT_PATTERN", "TOKENIZER_DIR", "UNK", "build_tokenizer"]

TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"
EOS = BOS = "<|endoftext|>"
PAD = "<|padding|>"
UNK = "<|unk|>"

# Extra words the scaffolding and relay may use (beyond what the generator produces).
_EXTRA_TEXT = (
    "Context: Q: A: Key facts: \n\n The answer is . , ? ! ' \" ; ( ) - Who What Where Which "
    "When How Why Yes No yes no the a an of in on to and is was"
)


def _phrases() -> list[str]:
    return sorted(task.RELATION_PHRASES, key=len, reverse=True)


SPLIT_PATTERN = (
    "(?:"
    + "|".join(" " + re.escape(p) for p in _phrases())
    + r"| ?[A-Za-z0-9]+| ?[^A-Za-z0-9\s]|\n| +)"
)


def _pieces(text: str) -> list[str]:
    return re.findall(SPLIT_PATTERN, text)


def _corpus(n: int = 6000, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    texts = [_EXTRA_TEXT]
    for _ in range(n):
        ex = task.make_example(rng, rng.choice((1, 2, 3, 4)))
        texts.append(ex.prompt + " " + ex.answer)
        texts.append(ex.context + "\n\nKey facts: " + ex.context)
    for names in task.LEXICON.values():
        for w in names:
            texts.append(w)
            texts.append(" " + w)
    for p in task.RELATION_PHRASES:
        texts.append(" " + p)
    return texts


def build_tokenizer(out_dir: str | os.PathLike[str] = TOKENIZER_DIR) -> Path:
    """Build and save the tokenizer; the vocabulary order is deterministic."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_set: set[str] = set()
    for t in _corpus():
        vocab_set.update(_pieces(t))
    specials = [EOS, PAD, UNK]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(vocab_set))}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
    tk.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return out


if __name__ == "__main__":  # pragma: no cover
    build_tokenizer()
