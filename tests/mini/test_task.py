"""The mini task generator: deterministic, frozen eval hash, invented names, bucketed lengths."""

from __future__ import annotations

import hashlib
import random

import pytest

from harness.mini import task
from harness.protocol import load_protocol


@pytest.fixture(scope="module")
def eval_rows():
    return task.build_eval_rows()


def test_generator_is_deterministic_for_a_seed():
    a = [task.make_example(random.Random(5), h) for h in (1, 2, 3, 4)]
    b = [task.make_example(random.Random(5), h) for h in (1, 2, 3, 4)]
    assert a == b
    s1, s2 = task.stream_examples(11), task.stream_examples(11)
    assert [next(s1) for _ in range(20)] == [next(s2) for _ in range(20)]


def test_rebuilding_the_eval_reproduces_the_protocol_sha256(eval_rows):
    proto = load_protocol("mini")
    digest = hashlib.sha256(task.rows_to_jsonl(eval_rows)).hexdigest()
    assert digest == proto.eval.sha256
    shipped = proto.resolve_path(proto.eval.path).read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == proto.eval.sha256


def test_eval_has_396_rows_in_the_artifact_field_names(eval_rows):
    proto = load_protocol("mini")
    assert len(eval_rows) == proto.eval.n == 396
    need = {
        "answer",
        "answer_type",
        "clean_eval_id",
        "context",
        "question",
        "hops",
        "clean_eval_version",
    }
    assert all(need <= set(r) for r in eval_rows)
    assert {r["clean_eval_version"] for r in eval_rows} == {proto.eval.version}
    assert eval_rows[0]["clean_eval_id"] == "mini_clean_000000"
    assert task.hop_counts(eval_rows) == {1: 99, 2: 99, 3: 99, 4: 99}


def test_translator_split_is_disjoint_from_the_eval(eval_rows):
    train = task.build_train_rows(eval_rows)
    assert len(train) == task.TRAIN_N
    ev = {(r["context"], r["question"]) for r in eval_rows}
    assert not ev & {(r["context"], r["question"]) for r in train}
    shipped = load_protocol("mini")
    path = shipped.resolve_path(shipped.eval.translator_train_path)
    assert path.read_bytes() == task.rows_to_jsonl(train)


def test_gold_answer_is_an_entity_of_the_context(eval_rows):
    for r in eval_rows:
        assert f" {r['answer']}." in " " + r["context"]
        assert r["answer"] not in r["question"]


@pytest.mark.parametrize("kind", sorted(task.LEXICON))
def test_entity_names_are_invented_not_real(kind):
    names = task.LEXICON[kind]
    assert len(set(names)) == len(names) == task.LEXICON_SIZES[kind]
    real = {
        "asia",
        "europe",
        "africa",
        "tokyo",
        "paris",
        "london",
        "japan",
        "france",
        "china",
        "india",
        "brazil",
        "egypt",
        "bob",
        "alice",
    }
    assert real <= task.REAL_NAMES
    assert not {n.lower() for n in names} & task.REAL_NAMES


def test_entity_names_are_disjoint_across_types():
    seen: set[str] = set()
    for names in task.LEXICON.values():
        assert not seen & set(names)
        seen |= set(names)
