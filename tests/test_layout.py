"""The package's halves: the analysis half never imports torch or transformers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, needs_artifact

HARNESS = ROOT / "harness"
HEAVY = ("torch", "transformers")
FORBIDDEN_IN_ANALYSIS = (*HEAVY, "harness.model", "harness.run", "harness.tools")
# Shared, torch-free modules at the package's top level.
SHARED = ("__init__", "cli", "conditions", "errors", "events", "io", "protocol", "sources")


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize(
    "module",
    sorted(p.relative_to(HARNESS).as_posix() for p in (HARNESS / "analysis").glob("*.py")),
)
def test_no_analysis_module_imports_the_model_half(module: str) -> None:
    bad = sorted(
        name
        for name in _imports(HARNESS / module)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_ANALYSIS)
    )
    assert not bad, f"harness/{module} imports {bad}"


def test_shared_top_level_modules_import_the_model_half_only_lazily() -> None:
    for name in SHARED:
        tree = ast.parse((HARNESS / f"{name}.py").read_text(encoding="utf-8"))
        top = set()
        for node in tree.body:  # module level only: imports inside functions are lazy
            if isinstance(node, ast.Import):
                top |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                top.add(node.module)
        bad = [m for m in top if m.startswith(FORBIDDEN_IN_ANALYSIS)]
        assert not bad, f"harness/{name}.py imports {bad} at module level"


def _loaded_after(code: str) -> str:
    probe = (
        code
        + "\nimport sys\nprint(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    return (
        subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def test_importing_the_analysis_half_loads_neither_torch_nor_transformers() -> None:
    modules = sorted(p.stem for p in (HARNESS / "analysis").glob("*.py") if p.stem != "__init__")
    code = "\n".join(f"import harness.analysis.{m}" for m in modules)
    code += "\nimport harness.sources, harness.cli, harness.protocol, harness.conditions"
    assert _loaded_after(code) == "[]"


@needs_artifact
def test_the_paper_claims_run_without_torch_or_transformers(tmp_path: Path) -> None:
    code = (
        "import pytest\n"
        "rc = pytest.main(['claims', '--source', 'paper', '-p', 'no:xdist', '-q', "
        f"'-p', 'no:cacheprovider', '--claims-status', {str(tmp_path / 's.json')!r}])\n"
        "assert rc == 0, rc"
    )
    assert _loaded_after(code) == "[]"
