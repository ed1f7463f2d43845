"""Project-wide pytest configuration: options, hypothesis profiles, claim-status recording."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from harness.sources import SOURCE_NAMES

settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("quick", max_examples=20, deadline=None)
settings.load_profile(
    "ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "default")
)

ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "activation-transfer claims")
    group.addoption(
        "--source",
        default=os.environ.get("HARNESS_SOURCES", ",".join(SOURCE_NAMES)),
        help="comma list of result sources: registered names (paper, mini, pythia), paths "
        "to protocol .toml files (named by their 'name') or sweep .toml files (one source "
        "<sweep>/<point> per point); default: every registered source; "
        "unavailable ones are skipped with the reason",
    )
    group.addoption(
        "--artifact",
        default=os.environ.get("HARNESS_ARTIFACT"),
        help="paper artifact folder (default: $HARNESS_ARTIFACT, else the copy shipped in vendor/paper-artifact)",
    )
    group.addoption(
        "--device",
        default=os.environ.get("HARNESS_DEVICE", "auto"),
        help="device for runner-backed sources: auto (xdist worker i -> cuda:{i mod n}, "
        "cpu without a GPU), cpu, cuda, cuda:N",
    )
    group.addoption(
        "--claims-status",
        default=str(ROOT / "out" / "claims_status.json"),
        help="where to record each claim's outcome per source (read by 'python -m harness claims')",
    )


def _failure_message(report: pytest.TestReport) -> str:
    """The assertion message of a failed claim (not ``file:line``), on one line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    text = text.removeprefix("AssertionError: ")
    # pytest appends its own "assert ..." explanation after the message; keep the message.
    lines = [ln for ln in text.splitlines() if ln.strip()]
    keep = []
    for ln in lines:
        if ln.lstrip().startswith(("assert ", "+  where", "where ")) and keep:
            break
        keep.append(ln.strip())
    return " ".join(keep)[:400]


class _StatusRecorder:
    """Collects claim outcomes (with what each measured) on the controlling process and
    writes them at the end. Entries of claims this run did not execute keep the time of the
    run that produced them, so the claim table never shows them as this run's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.outcomes: dict[str, dict[str, dict[str, str]]] = {}
        self.catalog: dict[str, dict[str, object]] = {}  # claim -> module, section, quote, line

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "claims/" not in report.nodeid.replace("\\", "/") or "[" not in report.nodeid:
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            func, _, param = report.nodeid.split("::")[-1].partition("[")
            source = param.partition("]")[0]  # "mini]" or, under --dist loadgroup, "mini]@mini"
            props = dict(getattr(report, "user_properties", ()))
            if isinstance(props.get("claim"), dict):
                self.catalog[func] = {**props["claim"], "run": self.run}
            measured = str(props.get("measured", ""))
            if hasattr(report, "wasxfail"):
                outcome = "xfail" if report.outcome == "skipped" else "xpass"
                detail = str(report.wasxfail).removeprefix("finding: ")
            else:
                outcome = report.outcome
                detail = ""
                if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
                    detail = str(report.longrepr[2]).removeprefix("Skipped: ")
                elif report.outcome == "failed":
                    detail = _failure_message(report)
            self.outcomes.setdefault(func, {})[source] = {
                "outcome": outcome,
                "measured": measured,
                "numbers": props.get("measured_numbers", {}),
                "detail": detail,
                "run": self.run,
            }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.outcomes:
            return
        from harness.io import atomic_write_json

        previous: dict = {}
        catalog: dict = {}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
                previous = loaded.get("claims", {}) if isinstance(loaded, dict) else {}
                catalog = loaded.get("catalog", {}) if isinstance(loaded, dict) else {}
            except (json.JSONDecodeError, OSError, UnicodeDecodeError):
                previous = {}
        catalog = (
            {k: v for k, v in catalog.items() if isinstance(v, dict)}
            if isinstance(catalog, dict)
            else {}
        )
        catalog.update(self.catalog)
        merged: dict = {}
        for func, per_source in previous.items():
            if isinstance(per_source, dict):
                merged[func] = {
                    s: v for s, v in per_source.items() if isinstance(v, dict) and "run" in v
                }
        for func, per_source in self.outcomes.items():
            merged.setdefault(func, {}).update(per_source)
        atomic_write_json(
            self.path,
            _finite({"latest_run": self.run, "claims": merged, "catalog": catalog}),
        )


def _check_sources(tokens: str) -> None:
    """A ``--source`` that names no source, or a protocol file that does not load, stops the
    run before collection with one line naming it and the fix (an unavailable source, such as
    a missing protocol file or absent weights, still skips its claims with the reason)."""
    from harness.errors import HarnessError
    from harness.sources import SourceUnavailable
    from harness.sweep import expand_tokens, spec_of

    try:  # a sweep file expands into its points, every one checked (issue #29)
        expanded = expand_tokens(t.strip() for t in tokens.split(",") if t.strip())
    except HarnessError as exc:
        fix = f" -- {exc.fix}" if exc.fix else ""
        raise pytest.UsageError(f"--source: {exc.what}{fix}") from None
    for token in expanded:
        try:
            spec_of(token)
        except SourceUnavailable:
            continue
        except HarnessError as exc:
            fix = f" -- {exc.fix}" if exc.fix else ""
            raise pytest.UsageError(f"--source: {exc.what}{fix}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    """Ctrl-C stops at once: pytest renders the whole interrupted traceback (every frame's
    source, parsed, through torch and transformers; 10 s and more per xdist worker) only to
    print its last line without ``--full-trace``, so the traceback is cut to that line first."""
    config = _CONFIG[0] if _CONFIG else None
    if config is None or not config.getoption("fulltrace", False):
        excinfo.traceback = excinfo.traceback[-1:]


_CONFIG: list[pytest.Config] = []


def _stop_worker(signum: int, frame: object) -> None:
    """SIGINT in an xdist worker: exit now. An interrupted worker otherwise spends 10 s and
    more in pytest's teardown (garbage-collecting the models' heap, rendering the traceback)
    while the grid's cores stay busy. Nothing is lost: every file is written to a temporary
    name and renamed into place (``harness.io``), and locks die with the process, so a later
    run finds each file complete or absent and recomputes only what is absent."""
    os._exit(128 + signum)


def _finite(obj: object) -> object:
    """``obj`` with every NaN or infinite float as None: a claim may measure NaN on a
    user's pair, and the status file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _check_status_path(path: str) -> None:
    """A ``--claims-status`` that is a device, FIFO or folder stops the run before it starts
    (the status file is written through a link, never onto a device)."""
    from harness.errors import HarnessError
    from harness.io import write_target

    try:
        write_target(path, "--claims-status")
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_configure(config: pytest.Config) -> None:
    _CONFIG[:] = [config]
    if hasattr(config, "workerinput"):  # an xdist worker: Ctrl-C ends it at once
        signal.signal(signal.SIGINT, _stop_worker)
    _check_sources(config.getoption("--source"))
    if not hasattr(config, "workerinput"):  # the xdist controller or a plain run
        _check_status_path(config.getoption("--claims-status"))
        config.pluginmanager.register(
            _StatusRecorder(Path(config.getoption("--claims-status"))), "harness-claims-status"
        )
