"""``fetch-artifact``: download the paper's artifact and verify every hash."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from harness.errors import HarnessError
from harness.io import atomic_write_bytes, sha256_file
from harness.spec.artifact import ARTIFACT_COMMIT, ARTIFACT_FILES, ARTIFACT_REPO, repo_path
from harness.text import printable

__all__ = ["DEFAULT_BASE_URL", "cmd_fetch", "fetch_artifact", "register"]


log = logging.getLogger(__name__)
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{ARTIFACT_REPO}/{ARTIFACT_COMMIT}"


def fetch_artifact(
    dest: str | os.PathLike[str], *, base_url: str = DEFAULT_BASE_URL, timeout: float = 60.0
) -> Path:
    """Download the artifact files into ``dest``, verifying each SHA-256; resumable.

    Files already present with the right hash are skipped; each download is written
    atomically only after its hash matches, so an interrupted fetch never leaves a bad file.
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    for rel, digest in ARTIFACT_FILES.items():
        target = root / rel
        if target.is_file() and sha256_file(target) == digest:
            continue
        url = f"{base_url.rstrip('/')}/{repo_path(rel)}"
        log.info("fetching %s", url)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                data = resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise HarnessError(
                f"could not download {url}: {exc}",
                "check network access to the repository host, or copy the artifact by hand "
                "and pass --artifact PATH",
            ) from None
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise HarnessError(
                f"downloaded {rel} has SHA-256 {got[:12]}..., expected {digest[:12]}...",
                "the source changed or the download was corrupted; retry, or check --base-url",
            )
        atomic_write_bytes(target, data)
    return root


def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.spec.artifact import verify_artifact

    root = (
        fetch_artifact(args.dest, base_url=args.base_url)
        if args.base_url
        else fetch_artifact(args.dest)
    )
    problems = verify_artifact(root)
    if problems:
        raise HarnessError(f"artifact at {root} failed verification: {problems}")
    print(printable(f"paper artifact ready at {root} (every SHA-256 verified)"))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch-artifact", help="download the paper artifact and verify its hashes")
    p.add_argument("dest", help="destination folder")
    p.add_argument("--base-url", help="alternative base URL (mirror) holding the repository layout")
    p.set_defaults(fn=cmd_fetch, writes_elsewhere=True)
