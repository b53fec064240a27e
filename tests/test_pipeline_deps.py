"""dvc.yaml lists, for every stage, all the code the stage runs: a change anywhere in it reruns the stage.

A stage's code is its script's import closure within ``embedtune`` (imports inside functions included, package
``__init__`` files too) and the non-Python files those modules read (the SQL schema, the search page).
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

SRC = REPO / "src"
PACKAGE = SRC / "embedtune"


def _module_file(name: str) -> Path | None:
    """The file of module ``name`` (``embedtune.train.soup``), or None when it is not a module of ours."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {n for n in names if n == "embedtune" or n.startswith("embedtune.")}


def _data_files(tree: ast.AST, module: Path) -> set[Path]:
    """Files beside ``module`` (in its package folder, any depth) that a string constant of it names."""
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return {p for p in module.parent.rglob("*") if p.is_file() and p.suffix != ".py" and p.name in strings
            and "__pycache__" not in p.parts}


def code_closure(script: Path) -> set[Path]:
    """The script, every ``embedtune`` module it runs (with their packages' ``__init__``) and their data files."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if path.suffix == ".py" and PACKAGE in path.parents:
            seen.update(_data_files(tree, path))
        for name in _imported(tree):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = _module_file(".".join(parts[:depth]))
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def missing_deps(stage: dict) -> list[str]:
    """Files of the stage's code that none of its deps covers (a dep covers itself and what lies under it)."""
    script = next(word for word in shlex.split(stage["cmd"]) if word.startswith("stages/") and word.endswith(".py"))
    deps = [REPO / d for d in stage.get("deps", [])]
    uncovered = [p for p in code_closure(REPO / script) if not any(p == d or d in p.parents for d in deps)]
    return sorted(str(p.relative_to(REPO)) for p in uncovered)


# The main pipeline, and the learning curve's (its stages run from the repository root: ``wdir: ..``).
STAGES = {**yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"],
          **{f"learning_curve/dvc.yaml:{name}": stage for name, stage in yaml.safe_load(
              (REPO / "learning_curve" / "dvc.yaml").read_text(encoding="utf-8"))["stages"].items()}}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_depends_on_all_the_code_it_runs(name: str) -> None:
    assert missing_deps(STAGES[name]) == []


def test_a_removed_dep_is_found() -> None:
    stage = dict(STAGES["train"])
    stage["deps"] = [d for d in stage["deps"] if d != "src/embedtune/train"]
    assert "src/embedtune/train/soup.py" in missing_deps(stage)
    stage["deps"] = [d for d in STAGES["reindex"]["deps"] if d != "src/embedtune/serving"]
    assert {"src/embedtune/serving/schema.sql", "src/embedtune/serving/db.py"} <= set(missing_deps(
        {**STAGES["reindex"], "deps": stage["deps"]}))


def test_the_closure_follows_imports_inside_functions_and_data_files() -> None:
    closure = {str(p.relative_to(REPO)) for p in code_closure(REPO / "stages" / "synthesize.py")}
    assert "src/embedtune/data/llm.py" in closure  # imported inside a function
    closure = {str(p.relative_to(REPO)) for p in code_closure(PACKAGE / "serving" / "app.py")}
    assert "src/embedtune/serving/static/index.html" in closure
