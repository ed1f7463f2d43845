"""fetch-artifact against a local HTTP server on 127.0.0.1 serving the repository layout."""

from __future__ import annotations

import functools
import gzip
import http.server
import logging
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cli import main
from harness.cli.artifact import fetch_artifact
from harness.errors import HarnessError
from harness.spec import artifact
from harness.spec.artifact import ARTIFACT_FILES, repo_path, verify_artifact
from tests.helpers import ARTIFACT, needs_artifact


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a copy of the artifact laid out as in the public repository."""
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


SHARED = Path(__file__).resolve().parents[2] / "shared" / "paper-artifact"


def test_the_vendored_artifact_is_found_without_any_path_or_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HARNESS_ARTIFACT", raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = artifact.find_artifact()
    assert root is not None and root.is_relative_to(tmp_path / "cache")
    assert verify_artifact(root) == {}
    assert (artifact.VENDORED / "LICENSE").is_file()
    notice = (artifact.VENDORED / "NOTICE").read_text(encoding="utf-8")
    assert artifact.ARTIFACT_REPO in notice and artifact.ARTIFACT_COMMIT in notice
    assert "Apache" in notice


@pytest.mark.skipif(
    not SHARED.is_dir(), reason="no uncompressed reference copy beside the checkout"
)
def test_the_vendored_artifact_decompresses_to_the_reference_copy_byte_for_byte(
    tmp_path: Path,
) -> None:
    root = artifact.vendored_artifact(tmp_path)
    for rel in ARTIFACT_FILES:
        assert (root / rel).read_bytes() == (SHARED / rel).read_bytes(), rel


@pytest.fixture
def vendored_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of vendor/paper-artifact that a test may damage."""
    copy = tmp_path / "vendor"
    shutil.copytree(artifact.VENDORED, copy)
    monkeypatch.setattr(artifact, "VENDORED", copy)
    monkeypatch.delenv("HARNESS_ARTIFACT", raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return copy


def test_a_tampered_vendored_file_is_a_one_line_error_naming_it(
    vendored_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = vendored_copy / "results/final/h1_replace_fwd_seed42.json.gz"
    data = gzip.decompress(target.read_bytes()).replace(b'"replace"', b'"replaze"', 1)
    target.write_bytes(gzip.compress(data))
    with pytest.raises(HarnessError, match=r"h1_replace_fwd_seed42\.json\.gz has SHA-256"):
        artifact.find_artifact()
    assert main(["summarize"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: vendored paper artifact file") and err.count("\n") == 1
    assert "git checkout -- vendor/paper-artifact" in err


def test_a_truncated_vendored_file_is_a_one_line_error(vendored_copy: Path) -> None:
    target = vendored_copy / "data/clean_eval.jsonl.gz"
    target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(HarnessError, match=r"clean_eval\.jsonl\.gz is unreadable"):
        artifact.find_artifact()


def test_a_damaged_decompressed_copy_is_rewritten_from_the_verified_vendored_bytes(
    vendored_copy: Path, tmp_path: Path
) -> None:
    root = artifact.find_artifact()
    assert root is not None
    victim = root / "results/final/h1_no_inject_fwd_deterministic.json"
    victim.write_text("{}")
    artifact._VERIFIED.clear()  # a new process
    assert artifact.find_artifact() == root
    assert verify_artifact(root) == {}


def test_an_explicit_artifact_path_and_the_environment_take_precedence(
    vendored_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere"
    shutil.copytree(artifact.find_artifact(), other)  # a verified copy of the published files
    assert artifact.find_artifact(other) == other.resolve()
    monkeypatch.setenv("HARNESS_ARTIFACT", str(other))
    assert artifact.find_artifact() == other.resolve()
    monkeypatch.setenv("HARNESS_ARTIFACT", str(tmp_path / "nowhere"))
    with pytest.raises(HarnessError, match=r"\$HARNESS_ARTIFACT"):
        artifact.find_artifact()


def _edited_copy(tmp_path: Path, edit) -> Path:
    other = tmp_path / "elsewhere"
    shutil.copytree(artifact.find_artifact(), other)
    edit(other)
    return other


def _edit_prediction(root: Path) -> None:
    target = root / "results/final/h1_replace_fwd_seed42.json"
    target.write_bytes(target.read_bytes().replace(b'"prediction": "', b'"prediction": "x', 1))


def _add_result_file(root: Path) -> None:
    src = root / "results/final/h1_replace_fwd_seed42.json"
    shutil.copy(src, root / "results/final/h1_replace_fwd_seed7.json")


def _drop_eval(root: Path) -> None:
    (root / "data/clean_eval.jsonl").unlink()


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (_edit_prediction, r"results/final/h1_replace_fwd_seed42\.json: sha256 mismatch"),
        (
            _add_result_file,
            r"results/final/h1_replace_fwd_seed7\.json: not a file of the published artifact",
        ),
        (_drop_eval, r"data/clean_eval\.jsonl: missing"),
    ],
    ids=["edited-file", "extra-result-file", "missing-file"],
)
def test_an_explicit_artifact_folder_is_hash_checked_as_the_vendored_copy_is(
    vendored_copy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    edit,
    pattern,
) -> None:
    """--artifact and $HARNESS_ARTIFACT folders are refused in one line naming the first file
    that is not the published one; $HARNESS_ARTIFACT_UNVERIFIED=1 takes an edited copy on
    purpose, with a warning."""
    other = _edited_copy(tmp_path, edit)
    assert main(["summarize", "--artifact", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(
        r"^error: paper artifact at .*elsewhere \(--artifact\) is not the published one: "
        + pattern
        + r".* -- .*HARNESS_ARTIFACT_UNVERIFIED=1",
        err,
    ), err
    monkeypatch.setenv("HARNESS_ARTIFACT", str(other))
    with pytest.raises(HarnessError, match=r"\(\$HARNESS_ARTIFACT\) is not the published one"):
        artifact.find_artifact()
    monkeypatch.setenv("HARNESS_ARTIFACT_UNVERIFIED", "1")
    with caplog.at_level(logging.WARNING, logger="harness.spec.artifact"):
        assert artifact.find_artifact() == other.resolve()
    assert any("used anyway" in r.getMessage() for r in caplog.records)
