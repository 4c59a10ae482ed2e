"""The layout's rules, enforced: one direction of imports between the project's packages.

* ``batch_workflows.dagster`` is the only part of ``batch_workflows`` that imports Dagster;
* nothing in ``batch_workflows`` imports ``assets`` or ``resources`` (this repository's code
  location, not installed); they import ``batch_workflows.dagster``'s public API;
* ``resources`` never imports ``assets``;
* flows never import each other (``batch_workflows/flows/<flow>`` nor ``assets/<flow>``);
* ``bench`` uses only the public names of ``assets`` packages (their ``__all__``);
* no module reaches into another module's private (``_``) names.
"""

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import batch_workflows

ROOT = Path(batch_workflows.__file__).parent.parent
ENGINE = ROOT / "batch_workflows"
INTEGRATION = ENGINE / "dagster"
FLOWS = ENGINE / "flows"
DAGSTER = {"dagster", "dagster_aws", "dagster_shared", "dagster_dg_cli", "dagster_dg_core"}
CODE_LOCATION = {"assets", "resources"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of each absolute import in a file; names empty for ``import x``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _roots(path: Path) -> set[str]:
    return {module.split(".")[0] for module, _ in _imports(path)}


def _sources(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*.py")]


def _flow_of(module: str, package: str) -> str | None:
    """The flow a dotted module belongs to under `package` (e.g. batch_workflows.flows)."""
    parts = module.split(".")
    depth = len(package.split("."))
    return parts[depth] if module.startswith(package + ".") and len(parts) > depth else None


def _flow_names() -> set[str]:
    return {p.name for p in FLOWS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def _outside_integration(path: Path) -> bool:
    return INTEGRATION not in path.parents


def test_only_the_integration_imports_dagster_and_nothing_imports_the_code_location():
    offenders = {
        str(path.relative_to(ENGINE)): sorted(roots & DAGSTER)
        for path in _sources(ENGINE)
        if _outside_integration(path) and (roots := _roots(path)) & DAGSTER
    }
    assert offenders == {}
    reaching_out = {str(p.relative_to(ENGINE)): sorted(r & CODE_LOCATION)
                    for p in _sources(ENGINE) if (r := _roots(p)) & CODE_LOCATION}
    assert reaching_out == {}
    assert any(_roots(p) & DAGSTER for p in _sources(INTEGRATION))


def test_the_code_location_uses_only_the_public_api_of_the_integration():
    public = set(importlib.import_module("batch_workflows.dagster").__all__)
    offenders = []
    for path in _sources(ROOT / "assets", ROOT / "resources", ROOT / "bench"):
        for module, names in _imports(path):
            if module == "batch_workflows.dagster":
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n not in public]
            elif module.startswith("batch_workflows.dagster."):
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []


def test_importing_every_module_outside_the_integration_loads_no_dagster():
    names = [m.name for m in pkgutil.walk_packages([str(ENGINE)], prefix="batch_workflows.")
             if not m.name.startswith("batch_workflows.dagster")]
    assert "batch_workflows.cli" in names and "batch_workflows.lifecycle.partition" in names
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_resources_never_import_assets():
    offenders = [p.name for p in _sources(ROOT / "resources") if "assets" in _roots(p)]
    assert offenders == []


def test_flows_never_import_each_other():
    flows = _flow_names()
    assert {"embeddings"} <= flows
    offenders = []
    for package, folder in (("batch_workflows.flows", FLOWS), ("assets", ROOT / "assets")):
        for path in _sources(folder):
            own = path.relative_to(folder).parts[0].removesuffix(".py")
            for module, _ in _imports(path):
                other = _flow_of(module, package)
                if other in flows and other != own and own in flows:
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_the_integration_loads_none_of_the_extras():
    """``import batch_workflows.dagster`` works on the light core: no model, server, vector
    store or MinHash library is imported."""
    code = ("import sys, batch_workflows.dagster\n"
            "heavy = {'torch', 'transformers', 'sentence_transformers', 'qdrant_client',\n"
            "         'datasketch', 'starlette', 'uvicorn', 'tokenizers'}\n"
            "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bench_uses_only_public_names_of_assets():
    offenders = []
    for path in _sources(ROOT / "bench"):
        for module, names in _imports(path):
            if module.split(".")[0] != "assets":
                continue
            public = set(getattr(importlib.import_module(module), "__all__", ()))
            offenders += [f"{path.name}: {module}.{n}" for n in names if n not in public]
    assert offenders == []


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for path in _sources(ENGINE, ROOT / "resources", ROOT / "assets", ROOT / "bench"):
        for module, names in _imports(path):
            if module.split(".")[0] in {"batch_workflows", "resources", "assets", "bench"}:
                offenders += [f"{path.relative_to(ROOT)}: {module}.{n}" for n in names
                              if n.startswith("_") and not n.startswith("__")]
    assert offenders == []


def test_the_public_engine_api_resolves():
    for name in batch_workflows.__all__:
        assert getattr(batch_workflows, name) is not None, name
