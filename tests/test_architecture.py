"""The import rule of docs/ARCHITECTURE.md, enforced on the import graph (every import, lazy ones too).

Stages import only the stages below them (:data:`ALLOWED`); nothing in ``visearch/`` imports
``jobs``; a job imports no other job; DAG files import only ``visearch.orchestration`` and no
heavy library at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "visearch"

# stage -> the stages it may import (besides itself). Read as "may depend on".
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "ingest": frozenset({"core"}),
    "train": frozenset({"core"}),
    "evaluate": frozenset({"core", "train"}),
    "embed": frozenset({"core", "ingest", "train", "evaluate"}),
    "index": frozenset({"core", "train"}),
    "serve": frozenset({"core", "ingest", "train", "index"}),
    "plan": frozenset({"core", "index"}),
    "orchestration": frozenset({"core"}),
    "demo": frozenset({"core", "ingest", "orchestration"}),
}
STAGES = frozenset(ALLOWED)
TOP = frozenset({"bench", "cli"})  # may import every stage (cli lazily, one command at a time)
# index may use the registry of the train stage (to resolve a model version), nothing else of it.
NARROW: dict[tuple[str, str], frozenset[str]] = {("index", "train"): frozenset({"visearch.train.registry"})}
HEAVY = ("pyspark", "torch", "torchvision", "faiss", "numpy", "pandas", "pyarrow", "PIL")


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, anywhere in the file, as ``(line, dotted name)``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from visearch.train import registry` imports the submodule visearch.train.registry
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module.startswith("visearch.") and node.module.count(".") == 1]
    return found


def stage_of(module: str) -> str | None:
    """``visearch.<stage>...`` -> ``<stage>``; the root package and its helpers -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "visearch" else None


def violations() -> list[str]:
    """Every import in ``visearch/`` that breaks :data:`ALLOWED`, as readable lines."""
    bad: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO)
        own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for line, module in imports_of(path):
            if module == "jobs" or module.startswith("jobs."):
                bad.append(f"{rel}:{line} imports {module}: the library never imports jobs")
                continue
            target = stage_of(module)
            if target is None or target == own or own == "__init__" or own in TOP:
                continue
            if own not in STAGES:
                bad.append(f"{rel}:{line}: {own} is not a known stage (add it to ALLOWED)")
            elif target in TOP:
                bad.append(f"{rel}:{line} imports {module}: stages never import {target}")
            elif target not in ALLOWED[own]:
                bad.append(f"{rel}:{line} imports {module}: {own} may import only {sorted(ALLOWED[own])}")
            elif (own, target) in NARROW and not any(
                module == allowed or module.startswith(allowed + ".") for allowed in NARROW[(own, target)]
            ) and module != f"visearch.{target}":
                bad.append(f"{rel}:{line} imports {module}: {own} may use only {sorted(NARROW[(own, target)])}")
    return bad


def test_import_rule__every_stage_imports_only_the_stages_below_it() -> None:
    assert violations() == []


def test_import_rule__every_package_folder_is_a_known_stage() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == STAGES | {"bench"}


def test_import_rule__catches_a_planted_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check itself can fail: core importing serve, and a library module importing a job.
    fake = tmp_path / "visearch"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "__init__.py").write_text("")
    (fake / "core" / "x.py").write_text("def f():\n    from visearch.serve.search import Searcher\n")
    (fake / "core" / "y.py").write_text("import jobs.train\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["_"]), "PACKAGE", fake)
    monkeypatch.setattr(__import__(__name__, fromlist=["_"]), "REPO", tmp_path)
    found = violations()
    assert len(found) == 2
    assert "visearch/core/x.py:2 imports visearch.serve.search" in found[0]
    assert "never imports jobs" in found[1]


def test_jobs__import_the_library_and_no_other_job() -> None:
    for path in sorted((REPO / "jobs").glob("*.py")):
        for line, module in imports_of(path):
            assert not (module == "jobs" or module.startswith("jobs.")), f"{path.name}:{line} imports {module}"


def test_dags__import_only_orchestration_and_nothing_heavy_at_module_level() -> None:
    for path in sorted((REPO / "dags").glob("*.py")):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                assert not name.startswith(HEAVY), f"{path.name}:{node.lineno} imports {name} at module level"
                if name.startswith("visearch"):
                    assert name.startswith("visearch.orchestration"), f"{path.name}:{node.lineno} imports {name}"


def test_architecture_doc__lists_every_module_under_its_stage() -> None:
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    listed: set[str] = set()
    stage = ""
    for line in doc.splitlines():
        if line.startswith("### `") and line.endswith("/`"):
            stage = line.removeprefix("### `").removesuffix("/`")
        elif line.startswith("- `") and stage:
            listed.add(f"{stage}/{line.split('`')[1]}")
    modules = {f"{p.parent.name}/{p.stem}" for p in PACKAGE.glob("*/*.py") if p.stem != "__init__"}
    assert modules == listed
