"""fetch-artifact against a local HTTP server on 127.0.0.1 serving the repository layout."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.artifact import ARTIFACT_FILES, fetch_artifact, repo_path, verify_artifact
from harness.cli import main
from harness.errors import HarnessError
from tests.helpers import ARTIFACT, needs_artifact


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a copy of the shared artifact laid out as in the public repository."""
    if ARTIFACT is None:
        pytest.skip("paper artifact not found")
    root = tmp_path / "repo"
    for rel in ARTIFACT_FILES:
        dst = root / repo_path(rel)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ARTIFACT / rel, dst)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@needs_artifact
def test_shared_artifact_matches_the_pinned_manifest() -> None:
    assert verify_artifact(ARTIFACT) == {}
    assert len([k for k in ARTIFACT_FILES if k.startswith("results/")]) == 33


def test_fetch_downloads_and_verifies_every_file(server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = server
    dest = tmp_path / "dest"
    assert main(["fetch-artifact", str(dest), "--base-url", url]) == 0
    assert verify_artifact(dest) == {}
    # Resumable: a second fetch with the server gone succeeds since every file is verified.
    assert fetch_artifact(dest, base_url="http://127.0.0.1:9") == dest


def test_fetch_refuses_a_corrupted_file_and_writes_nothing_for_it(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = server
    bad = root / repo_path("results/final/h1_replace_fwd_seed42.json")
    bad.write_text(bad.read_text().replace("replace", "replaze", 1))
    dest = tmp_path / "dest"
    with pytest.raises(HarnessError, match=r"h1_replace_fwd_seed42\.json has SHA-256"):
        fetch_artifact(dest, base_url=url)
    assert not (dest / "results/final/h1_replace_fwd_seed42.json").exists()
    assert not list(dest.rglob("*.tmp"))


def test_fetch_with_no_server_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch-artifact", str(tmp_path), "--base-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not download") and err.count("\n") == 1
