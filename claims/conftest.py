"""Claims fixtures: every test taking ``source`` runs once per result source.

Sources come from ``--source`` (default ``paper,mini,pythia``); an unavailable source is
skipped with the reason. Known non-replications are recorded in ``claims/findings.toml`` and
applied as ``xfail(strict=True)`` with the measured numbers: if such a claim starts to
hold, the run turns red so the finding is revisited.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from harness.devices import resolve_device
from harness.sources import Source, SourceUnavailable, load_source

FINDINGS = Path(__file__).with_name("findings.toml")
_LOADED: dict[str, Source | str] = {}


def _findings() -> dict[str, dict[str, str]]:
    if not FINDINGS.is_file():
        return {}
    return tomllib.loads(FINDINGS.read_text(encoding="utf-8"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "source" in metafunc.fixturenames:
        names = [s.strip() for s in metafunc.config.getoption("--source").split(",") if s.strip()]
        metafunc.parametrize("source", names, indirect=True, ids=names, scope="session")


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    findings = _findings()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "source" not in callspec.params:
            continue
        item.add_marker(pytest.mark.claim)
        # --dist loadgroup keeps a source's claims on one worker (ignored by other schedulers)
        item.add_marker(pytest.mark.xdist_group(name=callspec.params["source"]))
        func = item.originalname if hasattr(item, "originalname") else item.name
        reason = findings.get(func, {}).get(callspec.params["source"])
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"finding: {reason}"))


@pytest.fixture(scope="session")
def source(request: pytest.FixtureRequest) -> Source:
    """A result source (read-only: tests must not mutate it or its cached tables)."""
    name = request.param
    if name not in _LOADED:
        try:
            _LOADED[name] = load_source(
                name,
                artifact=request.config.getoption("--artifact"),
                device=resolve_device(request.config.getoption("--device")),
            )
        except SourceUnavailable as exc:
            _LOADED[name] = str(exc)
    got = _LOADED[name]
    if isinstance(got, str):
        pytest.skip(f"{name} source unavailable: {got}")
    return got
