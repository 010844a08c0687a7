"""Start-up of a long-running process for metrics: forget dead processes' live gauges, beat a heartbeat.

Each long-running process (web, consume_signals, process_signals, start_ingest, qcluster) calls
``metrics_process_start(name)`` once. It drops the live gauges that processes which have died left in the
metrics directory, and starts a daemon thread that beats the ``process:<name>`` heartbeat row every
``PROCESS_HEARTBEAT_INTERVAL`` seconds (0: no thread; the test settings use 0 so that code run inside the
test process leaves the test database alone). The web process turns those rows into
``ordermanager_process_heartbeat_age_seconds{process}`` when scraped, so a process that is gone shows as a
growing age, on any host. See docs/decisions/0525-metrics-multiprocess.md.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

import structlog
from django.conf import settings
from django.db import connection
from prometheus_client.multiprocess import mark_process_dead

from ordermanager.core.services.heartbeat import heartbeat_beat
from ordermanager.metrics_dir import ENV_VAR, metrics_dir_pids, pid_alive

log = structlog.get_logger(__name__)

PROCESS_PREFIX = "process:"
_started: dict[str, threading.Thread] = {}


def metrics_process_start(process: str) -> None:
    try:
        dead_processes_forget()
    except OSError as exc:
        log.warning("metrics_dir_unreadable", error=str(exc))
    interval = settings.PROCESS_HEARTBEAT_INTERVAL
    if interval <= 0 or process in _started:
        return
    thread = threading.Thread(target=_beat_forever, args=(process, interval), name="process-heartbeat", daemon=True)
    _started[process] = thread
    thread.start()


def dead_processes_forget(path: str | None = None) -> list[int]:
    """Drop the live gauges of processes that are gone (their counters and histograms keep counting)."""
    path = path or os.environ.get(ENV_VAR)
    if not path:
        return []
    dead = [pid for pid in metrics_dir_pids(path) if pid != os.getpid() and not pid_alive(pid)]
    for pid in dead:
        mark_process_dead(pid, path)
    return dead


def metrics_process_start_for_command(argv: list[str] | None = None) -> None:
    """qcluster is django-q2's command, not ours: its heartbeat starts when the apps are ready."""
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and argv[0].endswith("manage.py") and argv[1] == "qcluster":
        metrics_process_start("qcluster")


def _beat_forever(process: str, interval: float) -> None:
    stop = threading.Event()  # never set: a daemon thread ends with its process
    detail = f"{process} pid {os.getpid()} on {socket.gethostname()}"
    while True:
        try:
            heartbeat_beat(component=PROCESS_PREFIX + process, detail=detail)
        except Exception as exc:  # the database away: the age grows, which is what it should show
            log.warning("process_heartbeat_failed", process=process, error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            # No connection is held between beats: qcluster forks its workers meanwhile, and a child must not
            # inherit (and later close) a socket this thread still uses.
            connection.close()
        stop.wait(interval)
