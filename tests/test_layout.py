"""The engine package stays usable without Dagster (DESIGN.md §2)."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import batch_workflows

ENGINE = Path(batch_workflows.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_engine_sources_never_import_dagster_or_our_dagster_packages():
    offenders = {
        str(path.relative_to(ENGINE)): sorted(roots & {"dagster", "dagster_aws", "assets", "resources"})
        for path in ENGINE.rglob("*.py")
        if (roots := _imported_roots(path)) & {"dagster", "dagster_aws", "assets", "resources"}
    }
    assert offenders == {}


def test_importing_every_engine_module_loads_no_dagster():
    names = [m.name for m in pkgutil.walk_packages([str(ENGINE)], prefix="batch_workflows.")]
    assert "batch_workflows.cli" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resources_never_import_assets():
    root = ENGINE.parent / "resources"
    offenders = [p.name for p in root.rglob("*.py") if "assets" in _imported_roots(p)]
    assert offenders == []
