"""The import contract's first layers (issue #16, decision 0421): dependencies point one way.

``positions`` imports neither ``orders`` nor ``signals_app``; ``exchange`` imports no domain app; the Bybit
client and the simulator do not import each other. Every import statement counts, at module level and inside
functions (the source is parsed, nothing is imported), so a deferred import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_APPS = ("signals_app", "orders", "positions")

# (package directory, modules it must not import)
RULES = [
    ("positions", ("orders", "signals_app")),
    ("orders", ("signals_app",)),
    ("exchange", DOMAIN_APPS),
    ("exchange/bybit", ("exchange.simulator",)),
    ("exchange/simulator", ("exchange.bybit",)),
]


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, wherever it stands; ``from a import b`` gives
    both ``a`` and ``a.b`` (``b`` may be a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def is_within(module: str, forbidden: str) -> bool:
    return module == forbidden or module.startswith(forbidden + ".")


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, module in imported_modules(path)
        if any(is_within(module, f) for f in forbidden)
    ]


@pytest.mark.parametrize(("package", "forbidden"), RULES, ids=[package for package, _ in RULES])
def test_package_imports_nothing_from_higher_layers(package, forbidden):
    assert violations(package, forbidden) == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text("def f():\n    from orders.services import fills\n    import signals_app.models\n")
    assert imported_modules(source) == [(2, "orders.services"), (2, "orders.services.fills"),
                                        (3, "signals_app.models")]  # fmt: skip
