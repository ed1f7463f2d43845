"""Measure how much the mini grid depends on the machine's arithmetic.

Runs the whole mini grid (the paper's 24 files, zero replacement and the causal extension)
once per emulated machine, each in a fresh process with its own empty cache, and compares
every prediction with the reference variant (one thread, the native ISA: what the claims
suite runs). ATen's vector ISA (``ATEN_CPU_CAPABILITY``), oneDNN's (``ONEDNN_MAX_CPU_ISA``),
MKL's (``MKL_ENABLE_INSTRUCTIONS``) and the thread count stand in for other CPU kinds.

    python -m harness.tools.portability --out out/portability          # all variants
    python -m harness.tools.portability --out out/portability --variants ref,threads2
    python -m harness.tools.portability --protocol protocols/mini-withheld.toml --out out/port-wh
    python -m harness.tools.portability --conditions no_inject nl_relay last_token_causal_replace

Writes ``<out>/portability.json``: per variant and condition, how many predictions differ
from the reference and the spread of the word-boundary accuracy and of the paired delta
vs no-injection. ``harness/analysis/tolerance.py`` declares the snapshot tolerance this
measurement justifies.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

VARIANTS: dict[str, tuple[int, dict[str, str]]] = {
    "ref": (1, {}),
    "threads2": (2, {}),
    "aten_default": (1, {"ATEN_CPU_CAPABILITY": "default"}),
    "onednn_sse41_mkl_sse42": (
        1,
        {"ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    ),
    "all_scalar_threads2": (
        2,
        {
            "ATEN_CPU_CAPABILITY": "default",
            "ONEDNN_MAX_CPU_ISA": "SSE41",
            "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        },
    ),
}


def run_variant(name: str, out: Path, protocol: str, conditions: list[str] | None = None) -> float:
    threads, extra = VARIANTS[name]
    env = {**os.environ, **extra, "HARNESS_CACHE": str(out / f"{name}-cache")}
    env.pop("HARNESS_EVENTS", None)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            "--protocol",
            protocol,
            "--out",
            str(out / name),
            "--conditions",
            *(conditions or ["all"]),
            "--threads",
            str(threads),
            "--no-progress",
        ],
        check=True,
        env=env,
        cwd=ROOT,
    )
    return time.perf_counter() - t0


def _rows(results, stats) -> dict[tuple, dict]:
    from harness.analysis.tables import compare as paired
    from harness.analysis.tables import summarize

    out: dict[tuple[str, str, str, str], dict] = {}
    for r in summarize(results):
        out[("summary", r.condition, r.direction, "-")] = r.to_json()
    for c in paired(results, stats=stats):
        out[("compare", c.condition, c.direction, c.baseline)] = c.to_json()
    return out


def _kind(field: str) -> str | None:
    from harness.analysis.tolerance import COUNT_FIELDS, UNFROZEN_FIELDS, _is_proportion

    if field in UNFROZEN_FIELDS:
        return "p_value"
    if field in COUNT_FIELDS:
        return "count"
    if _is_proportion(field):
        return "proportion"
    return None


def compare(out: Path, names: list[str], protocol: str) -> dict:
    """Per condition: predictions differing from the reference, and the largest difference of
    each kind of table number (proportion, count per run, p-value) and translator metric."""
    from harness.analysis.results import ResultSet
    from harness.protocol import load_protocol

    stats = load_protocol(protocol).stats
    sets = {n: ResultSet.from_dirs(out / n) for n in names if (out / n).is_dir()}
    ref = sets["ref"]
    ref_pred = {f.name: f.predictions() for f in ref}
    ref_rows = _rows(ref, stats)
    ref_tr = {f.name: f.raw.get("translator") or {} for f in ref}
    report: dict = {
        "variants": {n: list(VARIANTS.get(n, (None, {"folder": str(out / n)}))) for n in sets},
        "conditions": {},
    }
    for cond in ref.conditions():
        report["conditions"][cond] = {
            "differing_predictions": {},
            "max_abs_difference": {},
        }
    for n, s in sets.items():
        rows = _rows(s, stats)
        for cond, entry in report["conditions"].items():
            diff = 0
            for f in s.runs(cond) + s.runs(cond, "rev"):
                other = ref_pred.get(f.name, {})
                diff += sum(1 for k, v in f.predictions().items() if other.get(k) != v)
            entry["differing_predictions"][n] = diff
            spread = entry["max_abs_difference"]
            for key, row in rows.items():
                if key[1] != cond or key not in ref_rows:
                    continue
                for field, value in row.items():
                    kind = _kind(field)
                    base = ref_rows[key].get(field)
                    if kind and isinstance(value, float | int) and isinstance(base, float | int):
                        spread[kind] = max(spread.get(kind, 0.0), abs(value - base))
            for f in s.runs(cond):
                tr, base = f.raw.get("translator") or {}, ref_tr.get(f.name, {})
                for field in ("normalized_cosine", "normalized_r2"):
                    if field in tr and field in base:
                        k = f"translator_{field}"
                        spread[k] = max(spread.get(k, 0.0), abs(tr[field] - base[field]))
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/portability")
    ap.add_argument("--protocol", default="mini")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--compare-only", action="store_true")
    ap.add_argument(
        "--conditions",
        nargs="+",
        default=None,
        metavar="NAME",
        help="run only these conditions (default: all; keep no_inject and nl_relay for the "
        "paired rows)",
    )
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also compare an existing result folder (e.g. a pytest claims cache entry)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    names = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    if "ref" not in names:
        names.insert(0, "ref")
    times = {}
    if not args.compare_only:
        for n in names:
            if not (out / n / ".done").is_file():
                times[n] = round(run_variant(n, out, args.protocol, args.conditions), 1)
                (out / n / ".done").write_text("ok\n")
    for spec in args.extra:
        name, _, folder = spec.partition("=")
        link = out / name
        if not link.exists():
            link.symlink_to(Path(folder).resolve())
        names.append(name)
    report = compare(out, names, args.protocol)
    report["seconds"] = times
    (out / "portability.json").write_text(json.dumps(report, indent=1) + "\n")
    for cond, row in report["conditions"].items():
        spread = {k: f"{v:.2g}" for k, v in row["max_abs_difference"].items()}
        print(f"{cond:36s} differing {row['differing_predictions']}  max |diff| {spread}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
