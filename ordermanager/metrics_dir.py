"""The directory where every process of the service writes its metric values (Prometheus multiprocess mode).

prometheus_client decides at import time whether values go to files: ``PROMETHEUS_MULTIPROC_DIR`` must be
in the environment before the first ``import prometheus_client`` of a process. The settings call
``metrics_dir_configure`` while they load, which is before any app code runs, in every process (manage.py
commands, uvicorn's ``ordermanager.asgi``, qcluster and its forked workers). This module must therefore not
import prometheus_client itself. See docs/decisions/0525-metrics-multiprocess.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client names its files <type>[_<gauge mode>]_<pid>.db
_PID = re.compile(r"_(\d+)\.db$")


def metrics_dir_configure(path: str) -> str:
    """Create ``path`` and point prometheus_client at it (this process and the ones it starts)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VAR] = path
    return path


def metrics_dir_reset(path: str) -> int:
    """Delete every value file: the service is (re)starting and no process of it runs. Returns the count."""
    removed = 0
    for file in Path(path).glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed


def metrics_dir_pids(path: str) -> set[int]:
    return {int(m.group(1)) for f in Path(path).glob("*.db") if (m := _PID.search(f.name))}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
