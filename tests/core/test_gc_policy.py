"""The collector's policy of the service processes (docs/decisions/0331)."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ordermanager.core.gc_policy import gc_policy_apply


@pytest.fixture
def collector_restored():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_policy_freezes_what_is_alive_and_raises_the_young_threshold(settings, collector_restored):
    settings.GC_GEN0_THRESHOLD = 12_345
    _, older, oldest = gc.get_threshold()

    assert gc_policy_apply("test") is True

    assert gc.get_threshold() == (12_345, older, oldest)
    assert gc.get_freeze_count() > 1000  # the modules, Django and the apps of this process


def test_zero_leaves_the_collector_as_python_sets_it(settings, collector_restored):
    settings.GC_GEN0_THRESHOLD = 0
    before = gc.get_threshold()

    assert gc_policy_apply("test") is False

    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_the_served_web_process_runs_under_the_policy():
    """What uvicorn imports (``ordermanager.asgi``), in a process of its own with the default settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "GC_GEN0_THRESHOLD")}
    code = "import gc, ordermanager.asgi; print(gc.get_threshold()[0], gc.get_freeze_count())"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip

    assert done.returncode == 0, done.stderr
    threshold, frozen = map(int, done.stdout.split())
    assert threshold == 50_000 and frozen > 10_000
