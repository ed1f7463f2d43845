"""The runner's caches (harness.run.cache): each entry computed once, a bad entry recomputed."""

from __future__ import annotations

import json

import pytest
import torch

from harness.model.activations import Activations
from harness.model.translator import fit_translator, load_translator, save_translator
from harness.protocol import load_protocol
from harness.run.cache import RunCache


@pytest.fixture
def cache(tmp_path) -> RunCache:
    return RunCache(tmp_path / "out", load_protocol("mini"))


def _acts(ids) -> Activations:
    gen = torch.Generator().manual_seed(0)
    states = tuple(torch.randn(len(t), 4, generator=gen) for t in ids)
    return Activations(site="s", states=states, token_ids=tuple(tuple(t) for t in ids))


def test_activations_are_computed_once_and_recomputed_when_the_file_is_bad(cache) -> None:
    ids = [[1, 2, 3], [4, 5]]
    calls = []

    def compute() -> Activations:
        calls.append(1)
        return _acts(ids)

    first, computed = cache.activations("s", "k", ids, compute)
    again, computed_again = cache.activations("s", "k", ids, compute)
    assert (computed, computed_again, len(calls)) == (True, False, 1)
    assert all(torch.equal(a, b) for a, b in zip(first.states, again.states, strict=True))
    # other prompts are another entry
    cache.activations("s", "k", [[1, 2, 3]], lambda: _acts([[1, 2, 3]]))
    assert len(calls) == 1
    (path,) = (cache.out / ".cache" / "activations").rglob("s-k-n2-*.safetensors")
    path.write_bytes(path.read_bytes()[:-7])  # truncated
    _, computed = cache.activations("s", "k", ids, compute)
    assert computed and len(calls) == 2


def test_a_translator_is_fitted_once_and_refitted_when_corrupt(cache) -> None:
    x, y = torch.randn(60, 4), torch.randn(60, 5)
    fits = []

    def fit():
        fits.append(1)
        return fit_translator(x, y, seed=0, method="ridge")

    tr, rel, fitted = cache.translator("key", fit, sender_dim=4, receiver_dim=5)
    assert fitted and rel == ".cache/translators/" + cache.protocol.hash + "/key.safetensors"
    _, _, fitted = cache.translator("key", fit, sender_dim=4, receiver_dim=5)
    assert not fitted and len(fits) == 1
    (cache.out / rel).write_bytes(b"not a tensor file")
    again, _, fitted = cache.translator("key", fit, sender_dim=4, receiver_dim=5)
    assert fitted and len(fits) == 2 and torch.equal(again.weight, tr.weight)


def test_a_result_file_is_claimed_by_one_holder_at_a_time(cache) -> None:
    other = RunCache(cache.out, cache.protocol)
    with cache.claim("h1_x.json", wait=False) as held:
        assert held
        with other.claim("h1_x.json", wait=False) as held_elsewhere:
            assert not held_elsewhere
    with other.claim("h1_x.json", wait=False) as held:
        assert held


def test_a_translator_saved_by_an_earlier_version_still_loads(tmp_path) -> None:
    """Before the recipe type was merged, the config kept the recipe's values at the top
    level; such cached translators load with the same recipe."""
    t = fit_translator(torch.randn(40, 3), torch.randn(40, 2), seed=1, method="ridge")
    base = save_translator(t, tmp_path / "t").with_suffix("")
    meta = json.loads(base.with_suffix(".json").read_text())
    cfg = meta["config"]
    meta["config"] = {**{k: v for k, v in cfg.items() if k != "recipe"}, **cfg["recipe"]}
    base.with_suffix(".json").write_text(json.dumps(meta))
    back = load_translator(base)
    assert back.config == t.config
    assert torch.equal(back.weight, t.weight)


def _inputs(**change):
    from harness.run.inputs import RunInputs

    base = dict(
        sender_weights="s" * 16,
        receiver_weights="r" * 16,
        tokenizer="t" * 16,
        eval_sha256="e" * 64,
        train_sha256="x" * 64,
        train_limit="560",
        init="pretrained",
    )
    return RunInputs(**{**base, **change})


@pytest.mark.parametrize(
    ("change", "activations_recomputed"),
    [
        ({"receiver_weights": "R" * 16}, True),
        ({"init": "random:0"}, True),
        ({"tokenizer": "T" * 16}, False),
        ({"train_sha256": "y" * 64}, False),
        ({"train_limit": "8"}, False),
        ({"version": 0}, True),
    ],
    ids=["weights", "init", "tokenizer", "training-file", "train-limit", "cache-version"],
)
def test_cache_entries_of_other_inputs_are_never_read(tmp_path, change, activations_recomputed):
    """A translator is refitted when any input it depends on changed; activations are
    recaptured when the weights, the init or the cache format changed; same inputs reuse
    both."""
    proto = load_protocol("mini")
    x, y = torch.randn(60, 4), torch.randn(60, 5)
    ids = [[1, 2, 3], [4, 5]]
    calls: list[str] = []

    def fit():
        calls.append("fit")
        return fit_translator(x, y, seed=0, method="ridge")

    def compute():
        calls.append("capture")
        return _acts(ids)

    for inputs in (_inputs(), _inputs(), _inputs(**change)):
        cache = RunCache(tmp_path / "out", proto, inputs)
        cache.translator("key", fit, sender_dim=4, receiver_dim=5)
        cache.activations("s", "k", ids, compute)
    want = ["fit", "capture", "fit"] + (["capture"] if activations_recomputed else [])
    assert calls == want


def test_an_edited_metric_beside_a_cached_translator_is_a_refit(cache) -> None:
    """Result files copy a cached translator's held-out metrics: an edited cosine fails the
    record's checksum, so the translator is refitted and the edit never reaches a file."""
    x, y = torch.randn(60, 4), torch.randn(60, 5)
    fits = []

    def fit():
        fits.append(1)
        return fit_translator(x, y, seed=0, method="ridge")

    tr, rel, _ = cache.translator("key", fit, sender_dim=4, receiver_dim=5)
    meta_path = (cache.out / rel).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["metrics"]["normalized_cosine"] = 0.97
    meta_path.write_text(json.dumps(meta))
    again, _, fitted = cache.translator("key", fit, sender_dim=4, receiver_dim=5)
    assert fitted and len(fits) == 2
    assert again.metrics["normalized_cosine"] == tr.metrics["normalized_cosine"] != 0.97


def test_ramesh_li_files_are_keyed_by_their_map_texts(tmp_path) -> None:
    """W is fitted on ``[translator] texts``: another texts file changes the source cache's
    key and refuses to resume a Ramesh & Li result file (naming the texts file), while the
    files of conditions that never read the texts still resume."""
    from harness.run.inputs import run_inputs, source_fingerprint
    from tests.model_fixtures import write_protocol

    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "a"}\n', encoding="utf-8")
    path = write_protocol(tmp_path / "p.toml", {"translator": {"texts": str(texts)}})
    proto = load_protocol(path)
    before = run_inputs(proto, eval_sha256="e" * 64)
    fp_before = source_fingerprint(proto)
    texts.write_text('{"text": "b"}\n', encoding="utf-8")
    proto = load_protocol(path)
    after = run_inputs(proto, eval_sha256="e" * 64)
    assert before.texts_sha256 != after.texts_sha256
    assert source_fingerprint(proto) != fp_before
    recorded = before.to_dict()
    assert after.changes(recorded, translator=True, map_texts=False) == []
    (line,) = after.changes(recorded, translator=True, map_texts=True)
    assert line.startswith("Ramesh & Li map texts file ([translator] texts) changed")
    # no texts set: the key is the one it was before the texts entered it
    bare = load_protocol(write_protocol(tmp_path / "q.toml", {"translator": {"texts": ""}}))
    assert "-t" not in source_fingerprint(bare).split("-", 1)[-1]
