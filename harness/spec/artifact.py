"""Where the paper's published artifact lives, and how a user gets it.

The artifact (the frozen clean eval, the task splits and 33 result files, Apache-2.0) ships
in the repository, gzip-compressed, under ``vendor/paper-artifact/`` with its LICENSE and a
NOTICE naming the upstream repository and commit. Lookup order: an explicit path,
``$HARNESS_ARTIFACT``, then the vendored copy, which is decompressed once into the cache
(``<cache>/paper-artifact/<commit>/``). Every uncompressed file is checked against the
SHA-256 manifest below on every load: a tampered vendored file is a one-line error, a
damaged decompressed copy is rewritten from the verified vendored bytes. An explicit or
environment path is checked against the same manifest (and may hold no other result file);
``$HARNESS_ARTIFACT_UNVERIFIED=1`` accepts an edited copy on purpose, with a warning.
``python -m harness fetch-artifact DEST`` (:mod:`harness.cli.artifact`, the only code that
touches the network) downloads the raw files from the public repository at the pinned commit
and checks the same manifest. This module only locates and verifies: it is part of the
experiment's specification (the manifest pins what the paper published).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from pathlib import Path

from harness.errors import HarnessError
from harness.io import atomic_write_bytes, cache_root, sha256_file

__all__ = [
    "ARTIFACT_COMMIT",
    "ARTIFACT_FILES",
    "ARTIFACT_REPO",
    "ENV_VAR",
    "UNVERIFIED_ENV",
    "VENDORED",
    "check_explicit_artifact",
    "find_artifact",
    "locate_artifact",
    "read_verified",
    "repo_path",
    "vendored_artifact",
    "verify_artifact",
]

log = logging.getLogger(__name__)

ARTIFACT_REPO = "jaysinailabs/cross-model-activation-transfer"
ARTIFACT_COMMIT = "6ce8afb1d1e608bb5c919b34aa3f1c7848a0a865"
ENV_VAR = "HARNESS_ARTIFACT"
UNVERIFIED_ENV = "HARNESS_ARTIFACT_UNVERIFIED"  # accept an edited copy on purpose
_REPO_ROOT = Path(__file__).resolve().parents[2]
VENDORED = _REPO_ROOT / "vendor" / "paper-artifact"
_VERIFIED: dict[tuple[Path, Path], bool] = {}  # (vendored, decompressed) checked this process

# Local layout -> SHA-256 of the file at the pinned commit.
ARTIFACT_FILES: dict[str, str] = {
    "LICENSE": "3b3fb41993f676eef7020ae893c9f469cc7bf736200624e2bfb8d0a1c5a6db96",
    "data/clean_eval.jsonl": "504e077cf17433e22967c86e98d321532d4e803dbe24d96af14c7e8ecdd0dcbb",
    "data/test.jsonl": "83e72730b9c13e4de070f111af3b704e8bd9efede33502e8f42af667447b9927",
    "data/train.jsonl": "f7dcaf6798e580b3883ac1d64d8403fd4af6dd99c724cd44f8181f2fe665fab3",
    "data/val.jsonl": "9c227ed32ae770ca13b29d5171e3d2eb179cd1dc9995a61e13a403de96b8c6ab",
    "results/final/h1_additive_fwd_seed123.json": "06245d67770b9de764066575108082fcbda0a0cce6eab1d91a4088962f0e59b0",
    "results/final/h1_additive_fwd_seed42.json": "04bedb07a88b346fb26f1d8787746d6fabecff26b7165abc275419fdeb227d23",
    "results/final/h1_additive_fwd_seed456.json": "0f8461f61f0323dcd3f194c08dddb7e23cf4693cab0c2e3565b723de2db9186c",
    "results/final/h1_b_to_b_self_inject_fwd_deterministic.json": "9d77cd818456b566fa3c63ae95ae54ce49106bd9201dbaaf4124aca3a1c93e7f",
    "results/final/h1_b_to_b_self_inject_rev_deterministic.json": "95c89cc83d30567d6a9d319161af9299aca34a0df8cf2818bf6f543032fec249",
    "results/final/h1_best_alpha_fwd_seed123_alpha0p3.json": "ea6d4183c82db58a57461050d4c8de9c9c5b486583d7504d9bf7e60dda7ad0b6",
    "results/final/h1_best_alpha_fwd_seed42_alpha0p3.json": "97f999342b3a8341f44a9dc51b3a07fd985f453c4a88a944d2943524abcf050b",
    "results/final/h1_best_alpha_fwd_seed456_alpha0p3.json": "e19fe222e8339c6c30b92c486ac425555a28aa9696f55763cf06b4e7ec0ddf58",
    "results/final/h1_nl_relay_fwd_deterministic.json": "5278930786aba2e450b040178c6c7718d68dc4cf1c91105421847033d5695645",
    "results/final/h1_no_inject_fwd_deterministic.json": "d497227b9fd6e079749d68fa3e0e75d2d8fff012cce973f5244b4df59c2ca132",
    "results/final/h1_replace_fwd_seed123.json": "67bf84177546403ce16f024f298b51166fcb1a15c965bf38c0b2f024153150bd",
    "results/final/h1_replace_fwd_seed42.json": "e56dc7ca938fa0ffb9b8c91859c20cdb41f2b8aed7a3a37ca48bcb8e26ff6ae3",
    "results/final/h1_replace_fwd_seed456.json": "584d4c9c63fbdcce69d3d85f5c6b57a1b722cb069b3d83ea535664df68d50137",
    "results/final/h1_same_norm_random_fwd_seed123.json": "c56c59460604bb588d48085d08be945e0037548eec9e6255073cdcc3c0483b9d",
    "results/final/h1_same_norm_random_fwd_seed42.json": "705b3d6f26096e7c90da585f4c15f3a00fbf916b2c32ee3a912916e74e1e0415",
    "results/final/h1_same_norm_random_fwd_seed456.json": "abafe2801d9359f2fac0398df152f443d1549ec9e6a109189e37428d1d894334",
    "results/final/h1_same_norm_random_rev_seed123.json": "c939b7d99f76a02f5e1514a8e6fbbdf8ff09f6f5ce6a495e6d1cd5ca2c4d8a04",
    "results/final/h1_same_norm_random_rev_seed42.json": "3c37aeb508c066b5faa9a45e6dda67e70b0ed4b0051c236cea2b3d96b9393005",
    "results/final/h1_same_norm_random_rev_seed456.json": "0ba08008d834b65bd91a3500c004c6dacf1416dfcfc0c4e620f1338ca52d22f2",
    "results/final/h1_scale_corrected_fwd_seed123_alpha1p0.json": "e3986d37a8fd6353c9d3b976a974d02baf953da61ac576d8f7e9ce4acc16eb49",
    "results/final/h1_scale_corrected_fwd_seed42_alpha1p0.json": "c6ea79692b1d92788372f62db3b54671472acd01728067bcd0a8ac88a34bcf72",
    "results/final/h1_scale_corrected_fwd_seed456_alpha1p0.json": "29780dacffe58d249dea4c0df58b3f3d665cb44fd10f5430e0adb9fc85253885",
    "results/final/h1_shuffled_translation_fwd_seed123_alpha1p0.json": "18391e0bb8ada8550b979d659d3753f9d2f4e6dd5ff0d9925b3075d6bc33d4a1",
    "results/final/h1_shuffled_translation_fwd_seed42_alpha1p0.json": "c8f527c51c7ddf94f15b2766985c89da1ee0bd76f928b007184c72ab8a4bd1ea",
    "results/final/h1_shuffled_translation_fwd_seed456_alpha1p0.json": "c2e2d05f205c6b21f92802bd700964d55dd79153555e567a676f35af14ef8ce3",
    "results/final/h1_shuffled_translation_rev_seed123_alpha1p0.json": "99441070c7e0381de2cefcabb1c0173471857c7a37987956262697aeb59c5faa",
    "results/final/h1_shuffled_translation_rev_seed42_alpha1p0.json": "3c6a1f764888af392f840be741816219037c40a73bffb54264db36f76741a91d",
    "results/final/h1_shuffled_translation_rev_seed456_alpha1p0.json": "9b72d71292b8c77e7c82f1d9a7801ae9cd36dbdd8c30c142577d69c1095ada38",
    "results/final/h1_zero_replacement_fwd_deterministic.json": "f507878bb81f1b5de57499fe3383f391cd611bc110cb035e57ef6e1a2d3d17c5",
    "results/final/h1_zero_replacement_rev_deterministic.json": "b5eaee08c831884c05ec1c62da792d96ae9639edda9752331c93b1f9c06c7997",
    "results/final_strict_controls/h1_shuffled_translation_strict_matched_fwd_seed123_alpha1p0.json": "acf3180b71c111771f546c48f16c53835af7e59bbc16e6cc2be75505841a34a5",
    "results/final_strict_controls/h1_shuffled_translation_strict_matched_fwd_seed42_alpha1p0.json": "37792e533a584744b42f2f1bf2fd51ab5d3775ec0a0444cfab1f52e1baf52812",
    "results/final_strict_controls/h1_shuffled_translation_strict_matched_fwd_seed456_alpha1p0.json": "286720d7fd76b84fd2ce3f2fb9f3cf3aa90e351558717c765de8fc0a69b1625b",
}


def repo_path(local: str) -> str:
    """Path of an artifact file inside the public repository."""
    if local.startswith("data/"):
        return "data/tasks/multi_hop_reasoning/" + local.removeprefix("data/")
    if local.startswith("results/"):
        return "papers/h1_activation_transfer/" + local
    return local


def _vendored_bytes(rel: str, digest: str) -> bytes:
    """The uncompressed bytes of one vendored file, refused unless they match ``digest``."""
    src = VENDORED / rel if rel == "LICENSE" else VENDORED / f"{rel}.gz"
    fix = "restore it with 'git checkout -- vendor/paper-artifact', or pass --artifact PATH"
    return read_verified(
        src, digest, "vendored paper artifact file", fix, compressed=rel != "LICENSE"
    )


def read_verified(src: Path, digest: str, what: str, fix: str, *, compressed: bool = True) -> bytes:
    """The bytes of the vendored file ``src`` (gunzipped when ``compressed``), refused with
    one line naming ``what`` and ``fix`` when it is missing, unreadable or not ``digest``."""
    try:
        raw = src.read_bytes()
        data = gzip.decompress(raw) if compressed else raw
    except FileNotFoundError:
        raise HarnessError(f"{what} {src} is missing", fix) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise HarnessError(f"{what} {src} is unreadable ({exc})", fix) from None
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise HarnessError(
            f"{what} {src} has SHA-256 {got[:12]}..., expected {digest[:12]}... "
            "(tampered or damaged)",
            fix,
        )
    return data


def vendored_artifact(cache: str | os.PathLike[str] | None = None) -> Path:
    """The vendored artifact as a plain folder, every file verified against the manifest.

    Decompressed under ``cache`` (default ``<HARNESS_CACHE or .cache/harness>/paper-artifact/
    <commit>``) under a file lock; a file there whose hash is wrong or that is missing is
    rewritten from the vendored bytes, which are verified first.
    """
    from filelock import FileLock

    base = Path(cache) if cache else _cache_dir()
    root = base / ARTIFACT_COMMIT[:12]
    if _VERIFIED.get((VENDORED, root)):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / f".{ARTIFACT_COMMIT[:12]}.lock")):
        for rel, digest in ARTIFACT_FILES.items():
            data = _vendored_bytes(rel, digest)
            target = root / rel
            if not (target.is_file() and sha256_file(target) == digest):
                atomic_write_bytes(target, data)
    _VERIFIED[(VENDORED, root)] = True
    return root


def _cache_dir() -> Path:
    return cache_root() / "paper-artifact"


def find_artifact(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The artifact folder: ``explicit``, ``$HARNESS_ARTIFACT``, else the vendored copy.

    An explicit or environment path must hold ``results/final``. None only when the vendored
    copy has been removed from the checkout.
    """
    for given, what in ((explicit, "--artifact"), (os.environ.get(ENV_VAR), f"${ENV_VAR}")):
        if not given:
            continue
        if not (Path(given) / "results" / "final").is_dir():
            raise HarnessError(
                f"no paper artifact at {given} ({what}; expected results/final inside)",
                "pass the folder that holds data/ and results/, unset it to use the copy "
                "shipped in vendor/paper-artifact, or run 'python -m harness fetch-artifact DEST'",
            )
        root = Path(given).resolve()
        check_explicit_artifact(root, what)
        return root
    if not VENDORED.is_dir():
        return None
    return vendored_artifact()


def _signature(root: Path) -> tuple:
    """(name, size, mtime) of every file under ``root``: a changed file re-verifies."""
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append((str(p.relative_to(root)), st.st_size, st.st_mtime_ns))
    return tuple(out)


_EXPLICIT_VERIFIED: dict[Path, tuple] = {}


def check_explicit_artifact(root: Path, what: str = "--artifact") -> None:
    """An artifact folder given by path is checked as the vendored copy is: every file of
    the manifest present with its SHA-256, and no result file outside the manifest; else one
    line naming the first bad file. ``$HARNESS_ARTIFACT_UNVERIFIED=1`` accepts a deliberately
    edited copy (e.g. to see which claims an edit turns red), with a warning."""
    sig = _signature(root)
    if _EXPLICIT_VERIFIED.get(root) == sig:
        return
    problems = dict(verify_artifact(root))
    for folder in ("results/final", "results/final_strict_controls"):
        if (root / folder).is_dir():
            for p in sorted((root / folder).glob("*.json")):
                rel = f"{folder}/{p.name}"
                if rel not in ARTIFACT_FILES:
                    problems[rel] = "not a file of the published artifact"
    if problems:
        rel, why = next(iter(problems.items()))
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        if os.environ.get(UNVERIFIED_ENV) == "1":
            log.warning(
                "paper artifact at %s (%s) is not the published one: %s: %s%s; used anyway "
                "($%s=1)", root, what, rel, why, more, UNVERIFIED_ENV,
            )  # fmt: skip
            return
        raise HarnessError(
            f"paper artifact at {root} ({what}) is not the published one: {rel}: {why}{more}",
            "fetch it again ('python -m harness fetch-artifact DEST'), use the copy shipped in "
            f"vendor/paper-artifact (drop {what}), or set {UNVERIFIED_ENV}=1 to use an edited "
            "copy on purpose",
        )
    _EXPLICIT_VERIFIED[root] = sig


def locate_artifact(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Like :func:`find_artifact`, but a clear error when it is nowhere."""
    found = find_artifact(explicit)
    if found is None:
        raise HarnessError(
            f"the paper artifact was not found (no --artifact, no ${ENV_VAR}, and {VENDORED} "
            "is missing)",
            "restore it with 'git checkout -- vendor/paper-artifact', or run "
            "'python -m harness fetch-artifact DEST' and pass --artifact DEST",
        )
    return found


def verify_artifact(root: str | os.PathLike[str]) -> dict[str, str]:
    """Check every file of the manifest; returns {path: problem} (empty when all match)."""
    problems = {}
    for rel, digest in ARTIFACT_FILES.items():
        p = Path(root) / rel
        if not p.is_file():
            problems[rel] = "missing"
        elif sha256_file(p) != digest:
            problems[rel] = "sha256 mismatch"
    return problems
