"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Model tests use one torch thread: tiny matmuls gain nothing from more, and pytest-xdist
    workers sharing two cores thrash with two threads each."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _registry_left_as_found() -> Iterator[None]:
    """Every test leaves the condition registry as it found it: a test that registers a
    condition must remove it (a finalizer), or this fixture errors in that test's teardown,
    in whichever xdist worker ran it."""
    from harness.conditions import CONDITIONS

    before = dict(CONDITIONS)
    yield
    if before != CONDITIONS:
        added = sorted(set(CONDITIONS) - set(before))
        removed = sorted(set(before) - set(CONDITIONS))
        CONDITIONS.clear()
        CONDITIONS.update(before)
        pytest.fail(f"the test changed the condition registry: added {added}, removed {removed}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test (or fixture) that takes ``family`` runs once per model family of the
    architecture table (``harness/model/arch.py``), on tiny random models
    (``tests/model_fixtures.py``); the table is imported only where a test asks for it."""
    if "family" in metafunc.fixturenames:
        from tests.model_fixtures import FAMILIES

        # module scope: a module-scoped fixture may take it (one tiny run per family)
        metafunc.parametrize("family", FAMILIES, scope="module")


# -- the tiny saved pair shared by test_errors and test_untrusted_input ---------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tokenizer, sender (3 x 32), receiver (6 x 48), and copies with a NaN embedding for 'K',
    with the eval and training JSONL, saved in one folder (``make_protocol`` writes a protocol
    over them). Read-only: a test copies what it changes."""
    import json

    import torch

    from tests.model_fixtures import EVAL_ROWS, build_char_tokenizer, tiny_model

    d = tmp_path_factory.mktemp("pair")
    tok = build_char_tokenizer(d / "tok")
    k = tok.convert_tokens_to_ids("K")  # only "Kyiv" (sample t05) has a K
    for name, seed, hidden, layers in (("sender", 1, 32, 3), ("receiver", 2, 48, 6)):
        model = tiny_model(seed, hidden=hidden, layers=layers)
        model.save_pretrained(d / name)
        with torch.no_grad():
            model.get_input_embeddings().weight[k] = float("nan")
        model.save_pretrained(d / f"{name}_nan")
    rows = "".join(json.dumps(r) + "\n" for r in EVAL_ROWS)
    (d / "eval.jsonl").write_text(rows, encoding="utf-8")
    train = [{k: v for k, v in r.items() if k != "clean_eval_id"} for r in EVAL_ROWS * 2]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def results(pair: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(protocol, folder) of a small finished run over ``pair``: no_inject, nl_relay, replace
    (seed 42, the first 3 rows). Read-only."""
    from harness.cli import main
    from tests.model_fixtures import make_protocol

    d = tmp_path_factory.mktemp("results")
    proto = make_protocol(pair, d)
    out = d / "out"
    argv = ["run", "--protocol", str(proto), "--out", str(out), "--no-progress", "--limit", "3"]
    assert main([*argv, "--conditions", "no_inject,nl_relay,replace"]) == 0
    return proto, out


@pytest.fixture(scope="module")
def tiny_protocol(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny experiment (``build_tiny_experiment``: a tiny sender, 3 layers x 32, and
    receiver, 6 x 48, with their data) in a fresh folder per test module, for the seeds the
    module's ``SEEDS`` names (default: 42 alone); returns the protocol path. Read-only: a test
    that changes the experiment builds its own."""
    from tests.model_fixtures import build_tiny_experiment

    seeds = tuple(getattr(request.module, "SEEDS", (42,)))
    return build_tiny_experiment(tmp_path_factory.mktemp("tiny"), seeds=seeds)
