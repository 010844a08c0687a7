"""The import contract (issue #16, docs/decisions/0422-import-contract.md): dependencies point one way.

pyproject.toml's ``[tool.importlinter]`` holds it: the layers ``ordermanager`` top (``ops``, dashboard,
reports, the entry points) > ``signals_app`` > ``orders`` > ``positions`` > ``exchange`` > ``ordermanager``
base; every module of ``ordermanager`` placed in one of its two layers; ``exchange`` importing no domain app;
the Bybit client and the simulator independent. ``lint-imports`` (import-linter on grimp's graph) checks
every import statement, at module level and inside functions, and every chain: as each module of the five
packages is in a layer, a chain that goes up (``orders -> a base module -> signals_app``) is reported at its
link that goes up (the base importing ``signals_app``).

The first test runs the contract on the repository; the others run the same contract on a copy of the
packages with one module added, to show it breaks, and says which chain, for each kind of wrong import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ordermanager", "signals_app", "orders", "positions", "exchange")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` with pyproject.toml's contract, on the packages under ``cwd`` (no cache written)."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())", "--no-cache", "--no-logo"],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
    )  # fmt: skip


def broken_part(output: str) -> str:
    """The part of lint-imports' report that names each broken contract and the chain that broke it."""
    return output.split("Broken contracts", 1)[-1].strip()


def test_the_import_contract_holds():
    done = lint_imports(ROOT)
    assert done.returncode == 0, f"the import contract is broken:\n{broken_part(done.stdout)}\n{done.stderr}"
    assert "0 broken" in done.stdout


@pytest.fixture
def copy(tmp_path):
    """The five packages' sources and pyproject.toml, nothing else (no tests, no caches)."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_module(root: Path, dotted: str, source: str) -> None:
    (root / Path(*dotted.split("."))).with_suffix(".py").write_text(source)


def test_the_copy_keeps_the_contract(copy):
    # The breakages below come from the module each adds, not from the copy.
    assert lint_imports(copy).returncode == 0


def test_the_check_sees_imports_inside_functions(copy):
    add_module(copy, "positions.probe", "def f():\n    from orders.models import Order\n    return Order\n")

    done = lint_imports(copy)

    assert done.returncode == 1
    report = broken_part(done.stdout)
    assert "positions is not allowed to import orders" in report
    assert "positions.probe -> orders.models (l.2)" in report


def test_a_chain_through_the_project_package_breaks_where_it_goes_up(copy):
    # orders -> a base module of ordermanager -> signals_app: orders' own import looks harmless (a base module);
    # the chain is reported at the link that goes up, the base importing signals_app (inside a function).
    add_module(copy, "ordermanager.core.probe", "def broker():\n    from signals_app import amqp\n    return amqp\n")
    add_module(copy, "orders.probe", "from ordermanager.core import probe\n")

    done = lint_imports(copy)

    assert done.returncode == 1
    report = broken_part(done.stdout)
    assert "ordermanager.core is not allowed to import signals_app" in report
    assert "ordermanager.core.probe -> signals_app.amqp (l.2)" in report


def test_exchange_importing_a_domain_app_breaks_it(copy):
    add_module(copy, "exchange.probe", "from positions.selectors import position_rows\n")

    report = broken_part(lint_imports(copy).stdout)

    assert "exchange imports no domain app" in report
    assert "exchange.probe -> positions.selectors (l.1)" in report


def test_the_client_and_the_simulator_stay_independent(copy):
    add_module(copy, "exchange.simulator.probe", "def f():\n    import exchange.bybit.client\n")

    report = broken_part(lint_imports(copy).stdout)

    assert "The Bybit client and the simulator are independent" in report
    assert "exchange.simulator is not allowed to import exchange.bybit" in report
    assert "exchange.simulator.probe -> exchange.bybit.client (l.2)" in report


def test_a_new_module_of_the_project_package_must_be_placed(copy):
    # Neither top nor base: the contract cannot tell whether it may read the apps, so it refuses it.
    add_module(copy, "ordermanager.newcomer", "X = 1\n")

    report = broken_part(lint_imports(copy).stdout)

    assert "Every module of ordermanager is placed" in report
    assert "ordermanager.newcomer" in report
