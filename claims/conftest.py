"""Claims fixtures: every test taking ``source`` runs once per result source.

Sources come from ``--source`` (default: every registered source); an unavailable source is
skipped with the reason. Each claim records what it measured through the ``measured``
fixture: the text goes to the claim table, the named numbers are compared with the numbers a
finding recorded. Known non-replications are recorded in ``claims/findings.toml`` and applied
as ``xfail(strict=True)``: if such a claim starts to hold, the run turns red so the finding is
revisited; if its measured numbers drift from the recorded ones by more than the declared
tolerance (``harness.analysis.tolerance``), the run turns red too, so the two cannot diverge silently.
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.tolerance import finding_tolerance, within
from harness.errors import HarnessError
from harness.sources import Source, SourceUnavailable
from harness.sweep import expand_tokens, load_any, spec_of

FINDINGS = Path(os.environ.get("HARNESS_FINDINGS") or Path(__file__).with_name("findings.toml"))
_LOADED: dict[str, Source | str] = {}


@functools.cache
def load_findings(path: Path = FINDINGS) -> dict[str, dict[str, dict[str, Any]]]:
    """claim -> source -> {why, recorded, tolerance} (read once per process; read-only)."""
    if not path.is_file():
        return {}
    return tomllib.loads(path.read_text(encoding="utf-8"))


@functools.cache
def source_name(token: str) -> str:
    """The name a ``--source`` token runs under: a registered name, or a TOML's ``name``."""
    try:
        return spec_of(token).name
    except (SourceUnavailable, HarnessError):
        return Path(token).stem


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "source" in metafunc.fixturenames:
        option = metafunc.config.getoption("--source")
        tokens = expand_tokens(s.strip() for s in option.split(",") if s.strip())
        ids = [source_name(t) for t in tokens]
        metafunc.parametrize("source", tokens, indirect=True, ids=ids, scope="session")


def _finding(item: pytest.Item) -> dict[str, Any] | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None or "source" not in callspec.params:
        return None
    func = getattr(item, "originalname", item.name)
    return load_findings().get(func, {}).get(source_name(callspec.params["source"]))


@pytest.hookimpl(tryfirst=True)  # before xdist's loadgroup reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "source" not in callspec.params:
            continue
        item.add_marker(pytest.mark.claim)
        # --dist loadgroup keeps a source's claims on one worker (ignored by other schedulers)
        item.add_marker(pytest.mark.xdist_group(name=source_name(callspec.params["source"])))
        finding = _finding(item)
        if finding:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"finding: {finding['why']}"))


@pytest.fixture
def measured(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``measured(text, **numbers)``: record what the claim measured on this source.

    Returns ``text`` so a test can use it as its assertion message. The text appears in the
    claim table; the numbers are checked against a finding's recorded numbers.
    """

    def record(text: str, **numbers: float) -> str:
        request.node.user_properties.append(("measured", text))
        clean = {k: float(v) for k, v in numbers.items()}
        request.node.user_properties.append(("measured_numbers", clean))
        return text

    return record


def _drift(finding: dict[str, Any], numbers: dict[str, float]) -> list[str]:
    """Recorded numbers of a finding that this run's measurement contradicts."""
    tol = finding_tolerance(finding.get("tolerance", "exact"))
    out = []
    for key, want in finding.get("recorded", {}).items():
        got = numbers.get(key)
        if got is None:
            out.append(f"{key}: recorded {want} but this run measured no such number")
        elif not (math.isfinite(got) and abs(got - float(want)) <= within(tol, float(want))):
            out.append(
                f"{key}: recorded {want}, measured {got:.4f} "
                f"(tolerance {within(tol, float(want)):g})"
            )
    return out


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Each claim reports what the claim table shows about it (module, paper section, the
    docstring quoting the paper, its place in the module), so the table is built from the
    run's status file, never by reading the test sources."""
    fn = getattr(item, "function", None)
    module = getattr(item, "module", None)
    if fn is None or module is None:
        return
    section = ((module.__doc__ or "").strip().splitlines() or [""])[0]
    item.user_properties.append(
        (
            "claim",
            {
                "module": module.__name__.rpartition(".")[2],
                "section": section,
                "quote": " ".join((fn.__doc__ or "").split()),
                "line": int(item.location[1] or 0),
            },
        )
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    if rep.when != "call":
        return
    finding = _finding(item)
    if not finding or not finding.get("recorded"):
        return
    numbers: dict[str, float] = {}
    for key, value in item.user_properties:
        if key == "measured_numbers":
            numbers.update(value)
    problems = _drift(finding, numbers)
    if problems:
        rep.outcome = "failed"
        if hasattr(rep, "wasxfail"):
            del rep.wasxfail
        rep.longrepr = (
            "finding drifted: claims/findings.toml records numbers this run does not "
            "reproduce -- " + "; ".join(problems)
        )


@pytest.fixture(scope="session")
def source(request: pytest.FixtureRequest) -> Source:
    """A result source (read-only: tests must not mutate it or its cached tables)."""
    name = request.param
    if name not in _LOADED:
        try:
            _LOADED[name] = load_any(
                name,
                artifact=request.config.getoption("--artifact"),
                device=request.config.getoption("--device"),
            )
        except SourceUnavailable as exc:
            _LOADED[name] = str(exc)
    got = _LOADED[name]
    if isinstance(got, str):
        pytest.skip(f"{source_name(name)} source unavailable: {got}")
    return got
