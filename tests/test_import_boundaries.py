"""The layout's rules, read from the code's own imports: the read side never reaches the trainer side or Keras.

`optimize/results/` (status, export, report, dashboard), `optimize/search/` and `optimize/storage/` run on a
login node that has no GPU and must not pay for TensorFlow. Every import counts, at module level or inside a
function; only imports under `if TYPE_CHECKING:` (never executed) are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

OUR_PACKAGES = ("optimize", "losses", "models", "data")
KERAS = ("keras", "tensorflow", "jax")
TRAINER_SIDE = ("optimize.training", "optimize.workers")
KERAS_FREE_SIDES = ("optimize.results", "optimize.search", "optimize.storage")


def module_file(name: str) -> Path | None:
    """The source file of one of our modules, or None for a module that is not ours."""
    if name.split(".")[0] not in OUR_PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; the parent packages of each too), outside TYPE_CHECKING blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for statement in block.body
        for node in ast.walk(statement)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in found:
            parts = name.split(".")
            names.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return names


def reachable(start: str) -> dict[str, str]:
    """Every module reachable from `start` through imports, each with the module that first imports it."""
    seen = {start: ""}
    queue = [start]
    while queue:
        current = queue.pop()
        path = module_file(current)
        if path is None:
            continue
        for name in sorted(imported_names(path)):
            if name not in seen:
                seen[name] = current
                queue.append(name)
    return seen


def chain(seen: dict[str, str], name: str) -> str:
    links = [name]
    while seen[links[-1]]:
        links.append(seen[links[-1]])
    return " <- ".join(links)


def side_modules(side: str) -> list[str]:
    folder = ROOT.joinpath(*side.split("."))
    return sorted(module_name(path) for path in folder.rglob("*.py"))


@pytest.mark.parametrize("side", KERAS_FREE_SIDES)
def test_the_read_side_never_imports_the_trainer_side_or_keras(side):
    modules = side_modules(side)
    assert len(modules) >= 3
    for module in modules:
        seen = reachable(module)
        bad = [name for name in seen if name.startswith(TRAINER_SIDE) or name.split(".")[0] in KERAS]
        assert not bad, f"{module} imports {chain(seen, bad[0])}"


def test_the_checker_sees_an_import_of_keras():
    seen = reachable("optimize.workers.worker")
    assert "keras" in seen and "optimize.training.train" in seen
    assert "optimize.results.record" in seen


TABLE_AND_FIGURE_LIBRARIES = ("pandas", "sklearn", "matplotlib", "plotly")


@pytest.mark.parametrize("start", ["optimize.workers.worker", "optimize.workers.pool"])
def test_a_worker_never_imports_the_table_and_figure_libraries(start):
    """Every GPU node starts one worker per trial slot, and each import costs every start CPU seconds
    (pandas and scikit-learn 0.7 s): the worker's own code and the data split need none of these."""
    seen = reachable(start)
    bad = [name for name in seen if name.split(".")[0] in TABLE_AND_FIGURE_LIBRARIES]
    assert not bad, f"{start} imports {chain(seen, bad[0])}"
