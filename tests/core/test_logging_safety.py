"""Logs carry tracebacks without frame locals (a secret held in a frame must not be printed) (issue 13)."""

import ast
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ordermanager.logging import make_formatter

ROOT = Path(__file__).resolve().parents[2]


def failing_log_line(json_format: bool) -> str:
    record_logger = logging.getLogger(f"tests.logging_safety.{json_format}")
    stream = __import__("io").StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(json=json_format))
    record_logger.addHandler(handler)
    record_logger.propagate = False
    try:
        api_secret = "s3cr3t-in-a-frame"  # noqa: F841 (a local the traceback must not show)
        raise ValueError("exchange refused")
    except ValueError:
        record_logger.exception("call_failed")
    finally:
        record_logger.removeHandler(handler)
    return stream.getvalue()


def test_json_logs_carry_the_traceback_as_structured_fields_without_locals():
    line = failing_log_line(True)
    event = json.loads(line)

    exception = event["exception"][0]
    assert (exception["exc_type"], exception["exc_value"]) == ("ValueError", "exchange refused")
    assert exception["frames"][-1]["name"] == "failing_log_line"
    assert all("locals" not in frame for frame in exception["frames"])
    assert "s3cr3t-in-a-frame" not in line


def test_console_logs_print_a_plain_traceback_without_locals():
    text = failing_log_line(False)

    assert "Traceback (most recent call last)" in text and "ValueError: exchange refused" in text
    assert "s3cr3t-in-a-frame" not in text


def test_the_websockets_logger_stays_quiet_at_debug():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = ("import django, logging; django.setup(); "
            "print(logging.getLogger('websockets').isEnabledFor(logging.DEBUG), "
            "logging.getLogger('orders').isEnabledFor(logging.DEBUG))")  # fmt: skip
    env.update(DJANGO_SETTINGS_MODULE="ordermanager.settings.base", LOG_LEVEL="debug")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True"]


DEV_ONLY_MODULES = {"pytest", "pytest_django", "pytest_timeout", "factory", "hypothesis", "ruff", "pybit", "ccxt",
                    "selenium", "schemathesis", "rich"}  # fmt: skip


def test_requirements_split_runtime_from_test_tools():
    runtime = (ROOT / "requirements.txt").read_text().lower()
    dev = (ROOT / "requirements-dev.txt").read_text().lower()
    for tool in ("pytest", "hypothesis", "selenium", "schemathesis", "ruff", "pybit", "ccxt", "factory-boy"):
        assert not re.search(rf"^{tool}\b", runtime, flags=re.MULTILINE), tool
        assert re.search(rf"^{tool}==", dev, flags=re.MULTILINE), tool
    assert "-r requirements.txt" in dev and "whitenoise==" in runtime


@pytest.mark.parametrize("package", ["ordermanager", "orders", "positions", "signals_app", "exchange"])
def test_the_service_imports_no_test_tool(package):
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in DEV_ONLY_MODULES, f"{path.relative_to(ROOT)} imports {name}"
