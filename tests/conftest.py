"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

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
