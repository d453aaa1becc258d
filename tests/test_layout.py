"""The house rules of DESIGN.md section 1: imports point one way.

server.py -> api -> pipeline -> processors -> agent -> (engines, storage); the
vendor fakes (`fakes/`) and the tests are for tests, tools and benchmarks only.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
_TEST_ONLY = {"tests", "fakes", "tools", "bench"}
_WEB = {"fastapi", "starlette", "api", "server"}
FORBIDDEN = {
    "api": _TEST_ONLY | {"server"},
    "pipeline": _TEST_ONLY | _WEB | {"storage"},
    "processors": _TEST_ONLY | _WEB | {"pipeline", "storage"},
    "agent": _TEST_ONLY | _WEB | {"pipecat", "pipeline", "processors"},
    "engines": _TEST_ONLY | _WEB | {"pipecat", "pipeline", "processors", "agent", "storage"},
    "storage": _TEST_ONLY | _WEB | {"pipecat", "pipeline", "processors", "agent", "engines"},
    "fakes": {"tests", "server", "api", "pipeline", "processors", "agent", "engines", "storage"},
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


def test_server_is_thin():
    """The entry wires routers to a runtime; routes and their shapes live in `api/`."""
    assert len((ROOT / "server.py").read_text().splitlines()) <= 120


def test_the_product_does_not_import_tests():
    product = [ROOT / "server.py", *[p for pkg in ("api", "pipeline", "processors", "agent", "engines", "storage", "tools")
                                     for p in (ROOT / pkg).rglob("*.py")]]
    assert {str(p.relative_to(ROOT)) for p in product if _imports(p) & {"tests"}} == set()
