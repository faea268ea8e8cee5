"""Import directions between packages (docs/architecture.md): the library below the boundary
receives specs, never the config; the reports never reach up into the trainer; the run
directory has one owner."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "synccp"


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; relative imports resolved), at any depth:
    imports inside functions count too."""
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


def _reaches(names: set[str], target: str) -> list[str]:
    return sorted(n for n in names if n == target or n.startswith(target + "."))


@pytest.mark.parametrize("package", ["sparsity", "cost", "eval", "results"])
def test_no_module_below_the_boundary_imports_the_config(package):
    offenders = {str(p.relative_to(SRC)): _reaches(imported_modules(p), "synccp.config")
                 for p in modules_of(package)}
    assert not {k: v for k, v in offenders.items() if v}, "import synccp.specs (RunSpec) instead"


def test_results_do_not_import_the_trainer():
    offenders = {str(p.relative_to(SRC)): _reaches(imported_modules(p), "synccp.train")
                 for p in modules_of("results")}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_run_directory_package_imports_neither_trainer_nor_reports():
    for path in modules_of("rundir"):
        names = imported_modules(path)
        assert not _reaches(names, "synccp.train") and not _reaches(names, "synccp.results"), path


def test_the_walker_sees_imports_inside_functions(tmp_path):
    assert "synccp.config" in imported_modules(SRC / "rundir" / "stored.py")
    assert "synccp.rundir.atomic" in imported_modules(SRC / "data" / "index.py")  # a lazy import
