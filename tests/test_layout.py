"""The house rules of DESIGN.md section 1: imports point one way."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FORBIDDEN = {
    "agent": {"pipecat", "fastapi", "starlette", "pipeline", "processors", "server"},
    "storage": {"pipecat", "fastapi", "starlette", "agent", "pipeline", "processors", "server"},
    "processors": {"fastapi", "starlette", "pipeline", "server", "storage"},
    "pipeline": {"fastapi", "starlette", "server", "storage"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {p: names for p, names in offenders.items() if names} == {}
