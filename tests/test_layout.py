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
SHARED = (
    "__init__",
    "cli/__init__",
    "conditions",
    "errors",
    "events",
    "io",
    "protocol",
    *sorted(f"sources/{p.stem}" for p in (HARNESS / "sources").glob("*.py")),
    "text",
)


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


# The layer rule (docs/architecture.md): a module imports only its own layer or lower ones,
# and no import chain, eager, lazy or type-only, comes back to where it started. Longest
# prefix wins; model and analysis are siblings and never import each other.
LAYERS: dict[str, int] = {
    "harness": 0,  # the package root (version)
    "harness.errors": 0,
    "harness.io": 0,
    "harness.events": 0,
    "harness.text": 0,
    "harness.conditions": 1,
    "harness.protocol": 1,
    "harness.spec": 1,
    "harness.model": 2,
    "harness.analysis": 2,
    "harness.run": 3,
    "harness.sources": 4,
    "harness.mini": 5,
    "harness.tools": 5,
    "harness.sweep": 5,  # sweeps as sources, and their picture (issue #29)
    "harness.cli": 6,
    "harness.__main__": 6,
}
SIBLINGS = {("harness.model", "harness.analysis"), ("harness.analysis", "harness.model")}


def _modules() -> dict[str, Path]:
    out = {}
    for p in HARNESS.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _layer_of(module: str) -> tuple[str, int]:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len)
    return best, LAYERS[best]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for name in _imports(path):
            if name in mods and name != m:
                graph[m].add(name)
    return graph


def test_every_import_follows_the_layers_down() -> None:
    """No module imports a higher layer (core < spec < model, analysis < run < sources <
    mini, tools < cli), eagerly, lazily or for types only."""
    bad = []
    for m, targets in _graph().items():
        home, rank = _layer_of(m)
        for t in sorted(targets):
            there, trank = _layer_of(t)
            if trank > rank or (home, there) in SIBLINGS:
                bad.append(f"{m} -> {t}")
    assert not bad, "imports against the layers: " + "; ".join(bad)


def test_no_module_import_chain_is_a_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append([*path[path.index(t) :], t])
            elif t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_layer_table_names_every_module() -> None:
    """A new top-level module or package must be placed in the table before it is used."""
    unplaced = [
        m
        for m in _modules()
        if not any(m == k or m.startswith(k + ".") for k in LAYERS if k != "harness")
    ]
    assert unplaced == ["harness"], unplaced
