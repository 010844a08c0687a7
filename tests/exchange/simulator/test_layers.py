"""The simulator's layering: wire (V5 parameters and shapes) under the typed engine, nothing from the project."""

import ast
from pathlib import Path

import exchange.simulator

PACKAGE = Path(exchange.simulator.__file__).parent


def _runtime_imports(path: Path) -> set[str]:
    """Modules imported by ``path``, leaving out ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
               and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}  # fmt: skip
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_wire_does_not_import_the_engine():
    assert "exchange.simulator.engine" not in _runtime_imports(PACKAGE / "wire.py")


def test_simulator_imports_no_project_code_outside_its_package():
    project = ("ordermanager", "orders", "positions", "signals_app", "exchange.bybit", "exchange.models", "django")
    for path in PACKAGE.glob("*.py"):
        outside = {m for m in _runtime_imports(path) if m.startswith(project)}
        assert not outside, f"{path.name} imports {sorted(outside)}"
