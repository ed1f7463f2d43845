"""The miniature multi-hop task: invented geography chains in the paper's style.

A context holds a few *chains* of facts, each in chain order, e.g.
``Dorvek reports to Talima. Talima works in Quenrith. Quenrith is located in Bravonia.
Bravonia is on the continent of Ostrelle.`` The other chains are the distractors. A question
starts at an entity of one chain and follows 1 to 4 relations; the gold answer is a single
invented name. Every relation phrase is one token of the mini tokenizer, so a fact is always
``subject, relation, object, "."``: the subject-object gap is fixed, which is what lets a tiny
model learn to bind an object to its subject.

Everything here is pure Python and deterministic: every draw takes an explicit
``random.Random``; nothing touches global seeds. Entity names come from a fixed, seeded
syllable generator and are checked against a list of real place names.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLEAN_EVAL_VERSION",
    "DATA_DIR",
    "EVAL_N",
    "LEXICON",
    "RELATION_PHRASES",
    "TRAIN_N",
    "Example",
    "build_eval_rows",
    "build_map_text_rows",
    "build_train_rows",
    "chance_rate",
    "format_prompt",
    "lexicon",
    "make_example",
    "stream_examples",
    "write_data",
    "write_map_texts",
]

DATA_DIR = Path(__file__).resolve().parent / "data"
CLEAN_EVAL_VERSION = "mini-clean-eval-v1"
EVAL_N = 396
TRAIN_N = 560
EVAL_SEED = 20260601
TRAIN_SEED = 20260602
MAP_TEXTS_N = 1024  # texts for Ramesh & Li's map W: well above the sender's width (96)
MAP_TEXTS_SEED = 20260603
LEXICON_SEED = 7

PROMPT_TEMPLATE = "Context: {context}\nQ: {question}\nA:"

# Relation phrases (each one token in the mini tokenizer). person->city verbs carry the verb
# the question reuses; the other relations have two paraphrases each.
PERSON_CITY = {"works in": "work", "lives in": "live", "was born in": "born"}
CITY_COUNTRY = ("is located in", "is a city in")
COUNTRY_CONTINENT = ("is on the continent of", "is part of")
REPORTS_TO = "reports to"
RELATION_PHRASES = (*PERSON_CITY, *CITY_COUNTRY, *COUNTRY_CONTINENT, REPORTS_TO)

# Real names the invented lexicon must never produce (also used by the tests).
REAL_NAMES = frozenset(
    """
    africa asia europe america antarctica australia oceania eurasia
    china japan india france spain italy germany brazil canada mexico chile peru cuba egypt
    kenya mali chad iran iraq oman togo fiji laos nepal russia poland norway sweden finland
    greece turkey israel jordan yemen qatar sudan niger nigeria ghana gabon benin angola
    zambia malawi uganda rwanda sweden denmark ireland iceland austria hungary romania serbia
    albania croatia latvia estonia belarus ukraine moldova georgia armenia vietnam thailand
    malta cyprus monaco samoa tonga palau nauru tuvalu guyana bolivia panama belize
    tokyo paris london berlin rome madrid lima cairo delhi dubai seoul oslo kiev riga baku
    doha kabul dakar accra lagos tunis rabat quito bogota havana ottawa moscow vienna prague
    warsaw athens lisbon dublin sofia zagreb minsk tallinn vilnius beijing shanghai sydney
    boston denver dallas austin chicago houston phoenix miami atlanta seattle toronto
    montreal mumbai karachi manila jakarta hanoi bangkok nairobi lusaka harare luanda
    bob alice carol dave eve zara chen wei anna maria john mary james linda
    """.split()  # noqa: SIM905
)

_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "gr",
    "kr",
    "tr",
    "st",
    "th",
    "qu",
    "sk",
    "pl",
)
_VOWELS = ("a", "e", "i", "o", "u", "ae", "ei", "ou")
_CODAS = ("", "", "n", "r", "l", "s", "th", "m", "x", "nd", "rk")
_SUFFIX = {
    "person": ("", "a", "o", "in", "el", "is", "an"),
    "city": ("ford", "holm", "mere", "rith", "dale", "grad", "port", "wick"),
    "country": ("ania", "oria", "esh", "avia", "undi", "estan", "ovar", "eny"),
    "continent": ("ara", "ossa", "eldt", "umbra"),
}
LEXICON_SIZES = {"person": 240, "city": 160, "country": 96, "continent": 12}

TYPE_NOUN = {"person": "person", "city": "city", "country": "country", "continent": "continent"}


def _invent(rng: random.Random, kind: str) -> str:
    stem = rng.choice(_ONSETS) + rng.choice(_VOWELS)
    if kind == "person" or rng.random() < 0.5:
        stem += rng.choice(_ONSETS[:14]) + rng.choice(_VOWELS[:5])
    word = stem + rng.choice(_CODAS) + rng.choice(_SUFFIX[kind])
    return word[:1].upper() + word[1:]


def lexicon(seed: int = LEXICON_SEED) -> dict[str, tuple[str, ...]]:
    """The fixed invented names per entity type (disjoint across types, none real)."""
    rng = random.Random(seed)
    used: set[str] = set()
    out: dict[str, tuple[str, ...]] = {}
    for kind, n in LEXICON_SIZES.items():
        names: list[str] = []
        while len(names) < n:
            w = _invent(rng, kind)
            if w in used or w.lower() in REAL_NAMES or not 4 <= len(w) <= 11:
                continue
            used.add(w)
            names.append(w)
        out[kind] = tuple(names)
    return out


LEXICON = lexicon()


@dataclass(frozen=True)
class Example:
    """One QA item: a context of fact chains, a question, a one-name answer."""

    context: str
    question: str
    answer: str
    answer_kind: str  # entity type of the answer: person / city / country / continent
    hops: int
    n_candidates: int  # distinct entities of the answer's type in the context

    @property
    def prompt(self) -> str:
        return format_prompt(self.context, self.question)


def format_prompt(context: str, question: str) -> str:
    """The paper's prompt: ``Context: {context}\\nQ: {question}\\nA:``."""
    return PROMPT_TEMPLATE.format(context=context, question=question)


def chance_rate(n_candidates: int) -> float:
    """Chance of picking the gold among the context's same-type entities."""
    return 1.0 / max(1, n_candidates)


# (start kind, hops) -> question templates. {s}: start entity; {v}: person's verb
# (work/live/born) of the person whose city is asked about.
def _questions(start: str, via_manager: bool, hops: int, verb: str) -> list[str]:
    born = verb == "born"
    if start == "person" and not via_manager:
        if hops == 1:
            return (
                [
                    "Where was {s} born?",
                    "In which city was {s} born?",
                    "Which city was {s} born in?",
                ]
                if born
                else [
                    "Where does {s} {v}?",
                    "In which city does {s} {v}?",
                    "Which city does {s} {v} in?",
                ]
            )
        if hops == 2:
            return (
                ["Which country was {s} born in?", "In which country was {s} born?"]
                if born
                else ["Which country does {s} {v} in?", "In which country does {s} {v}?"]
            )
        return (
            [
                "Which continent was {s} born on?",
                "What continent is the country where {s} was born part of?",
            ]
            if born
            else [
                "Which continent does {s} {v} on?",
                "On which continent does {s} {v}?",
                "What continent is the country where {s} {v}s located on?",
            ]
        )
    if start == "person":  # the chain starts with "{s} reports to {m}"
        if hops == 1:
            return [
                "Who does {s} report to?",
                "Who is the manager of {s}?",
                "To whom does {s} report?",
            ]
        m = "the manager of {s}"
        if hops == 2:
            return (
                [f"Where was {m} born?", f"In which city was {m} born?"]
                if born
                else [f"Where does {m} {{v}}?", f"In which city does {m} {{v}}?"]
            )
        if hops == 3:
            return (
                [f"Which country was {m} born in?"]
                if born
                else [f"Which country does {m} {{v}} in?", f"In which country does {m} {{v}}?"]
            )
        return (
            [f"Which continent was {m} born on?"]
            if born
            else [f"Which continent does {m} {{v}} on?", f"On which continent does {m} {{v}}?"]
        )
    if start == "city":
        if hops == 1:
            return [
                "Which country is {s} located in?",
                "In which country is {s}?",
                "Which country is {s} in?",
            ]
        return [
            "Which continent is {s} on?",
            "On which continent is {s}?",
            "What continent is {s} part of?",
        ]
    return [
        "Which continent is {s} on?",
        "On which continent is {s}?",
        "What continent is {s} part of?",
    ]


# (hops) -> possible (start kind, via_manager) paths
_PATHS = {
    1: [("person", False), ("person", True), ("city", False), ("country", False)],
    2: [("person", False), ("person", True), ("city", False)],
    3: [("person", False), ("person", True)],
    4: [("person", True)],
}


def make_example(
    rng: random.Random,
    hops: int,
    *,
    n_chains: int = 3,
    manager_p: float = 0.5,
    lex: dict[str, tuple[str, ...]] | None = None,
) -> Example:
    """Draw one example with ``n_chains`` chains and a ``hops``-hop question."""
    lex = LEXICON if lex is None else lex
    start, via_manager = rng.choice(_PATHS[hops])
    persons = rng.sample(lex["person"], 2 * n_chains)
    cities = rng.sample(lex["city"], n_chains)
    countries = rng.sample(lex["country"], n_chains)
    continents = rng.sample(lex["continent"], n_chains)
    target = rng.randrange(n_chains)
    chains: list[list[str]] = []
    chain_info: list[dict[str, Any]] = []
    for i in range(n_chains):
        has_mgr = (i == target and via_manager) or (
            not (i == target and start == "person" and not via_manager) and rng.random() < manager_p
        )
        p, m = persons[2 * i], persons[2 * i + 1]
        rel_pc = rng.choice(list(PERSON_CITY))
        facts = []
        if has_mgr:
            facts.append(f"{p} {REPORTS_TO} {m}.")
        worker = m if has_mgr else p
        facts.append(f"{worker} {rel_pc} {cities[i]}.")
        facts.append(f"{cities[i]} {rng.choice(CITY_COUNTRY)} {countries[i]}.")
        facts.append(f"{countries[i]} {rng.choice(COUNTRY_CONTINENT)} {continents[i]}.")
        chains.append(facts)
        chain_info.append({"p": p, "m": m if has_mgr else None, "verb": PERSON_CITY[rel_pc]})
    info = chain_info[target]
    if start == "person":
        s = info["p"]
        path = (["person"] if via_manager else []) + ["city", "country", "continent"]
    elif start == "city":
        s = cities[target]
        path = ["country", "continent"]
    else:
        s = countries[target]
        path = ["continent"]
    kind = path[hops - 1]
    answer = {
        "person": info["m"],
        "city": cities[target],
        "country": countries[target],
        "continent": continents[target],
    }[kind]
    template = rng.choice(_questions(start, via_manager, hops, info["verb"]))
    question = template.format(s=s, v=info["verb"])
    order = list(range(n_chains))
    rng.shuffle(order)
    context = " ".join(f for i in order for f in chains[i])
    n_mgr = sum(1 for c in chain_info if c["m"] is not None)
    n_cand = {
        "person": n_chains + n_mgr,
        "city": n_chains,
        "country": n_chains,
        "continent": n_chains,
    }[kind]
    return Example(context, question, answer, kind, hops, n_cand)


def stream_examples(
    seed: int, *, hop_weights: dict[int, float] | None = None, n_chains: tuple[int, ...] = (3,)
) -> Iterator[Example]:
    """An endless stream of fresh examples (a fixed set gets memorised by tiny models)."""
    rng = random.Random(seed)
    weights = hop_weights or {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}
    hops_list, w = list(weights), list(weights.values())
    while True:
        h = rng.choices(hops_list, w)[0]
        yield make_example(rng, h, n_chains=rng.choice(n_chains))


def _rows(seed: int, n: int, prefix: str, exclude: set[tuple[str, str]]) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    seen = set(exclude)
    per_hop = n // 4
    hop_plan = [h for h in (1, 2, 3, 4) for _ in range(per_hop)]
    hop_plan += [rng.choice((1, 2, 3, 4)) for _ in range(n - len(hop_plan))]
    rng.shuffle(hop_plan)
    for h in hop_plan:
        while True:
            ex = make_example(rng, h)
            key = (ex.context, ex.question)
            if key not in seen:
                break
        seen.add(key)
        rows.append(
            {
                "answer": ex.answer,
                "answer_type": "entity",
                "chance": round(chance_rate(ex.n_candidates), 6),
                "clean_eval_id": f"{prefix}_{len(rows):06d}",
                "clean_eval_version": CLEAN_EVAL_VERSION,
                "context": ex.context,
                "domain_inferred": "geography",
                "entity_type": ex.answer_kind,
                "hops": ex.hops,
                "n_candidates": ex.n_candidates,
                "question": ex.question,
            }
        )
    return rows


def build_eval_rows() -> list[dict[str, Any]]:
    """The frozen 396-row clean eval (99 rows per hop count)."""
    return _rows(EVAL_SEED, EVAL_N, "mini_clean", set())


def build_train_rows(eval_rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The translator-training prompts, disjoint from the eval by (context, question)."""
    eval_rows = build_eval_rows() if eval_rows is None else eval_rows
    exclude = {(r["context"], r["question"]) for r in eval_rows}
    rows = _rows(TRAIN_SEED, TRAIN_N, "mini_train", exclude)
    for r in rows:
        r["split"] = "train"
    return rows


def build_map_text_rows(
    eval_rows: list[dict[str, Any]] | None = None,
    train_rows: list[dict[str, Any]] | None = None,
    n: int = MAP_TEXTS_N,
) -> list[dict[str, Any]]:
    """The texts Ramesh & Li's map W is fitted on (both models read each one): ``n`` task
    prompts from the same generator, disjoint by (context, question) from every eval and
    translator-training row. Rows ``{"id", "text"}``."""
    eval_rows = build_eval_rows() if eval_rows is None else eval_rows
    train_rows = build_train_rows(eval_rows) if train_rows is None else train_rows
    exclude = {(r["context"], r["question"]) for r in [*eval_rows, *train_rows]}
    rows = _rows(MAP_TEXTS_SEED, n, "mini_maptext", exclude)
    return [
        {"id": r["clean_eval_id"], "text": format_prompt(r["context"], r["question"])} for r in rows
    ]


def write_map_texts(out_dir: str | os.PathLike[str] = DATA_DIR) -> str:
    """Write ``map_texts.jsonl`` (:func:`build_map_text_rows`); return its SHA-256."""
    from harness.io import atomic_write_bytes

    data = rows_to_jsonl(build_map_text_rows())
    atomic_write_bytes(Path(out_dir) / "map_texts.jsonl", data)
    return hashlib.sha256(data).hexdigest()


def rows_to_jsonl(rows: list[dict[str, Any]]) -> bytes:
    """Canonical bytes: one sorted-key JSON object per line, LF endings."""
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode()


def write_data(out_dir: str | os.PathLike[str] = DATA_DIR) -> dict[str, str]:
    """Write ``clean_eval.jsonl`` and ``train.jsonl``; return their SHA-256 digests."""
    from harness.io import atomic_write_bytes

    out = Path(out_dir)
    ev = build_eval_rows()
    tr = build_train_rows(ev)
    digests = {}
    for name, rows in (("clean_eval.jsonl", ev), ("train.jsonl", tr)):
        data = rows_to_jsonl(rows)
        atomic_write_bytes(out / name, data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def hop_counts(rows: list[dict[str, Any]]) -> Counter[int]:
    return Counter(int(r["hops"]) for r in rows)


if __name__ == "__main__":  # pragma: no cover
    import logging

    logging.basicConfig(level=logging.INFO)
    logging.getLogger(__name__).info("%s", write_data())
    logging.getLogger(__name__).info("map_texts.jsonl %s", write_map_texts())
