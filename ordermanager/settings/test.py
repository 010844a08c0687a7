"""Test settings: everything from base, with jobs synchronous and hashing fast."""

import atexit
import os
import shutil
import tempfile

from ordermanager.metrics_dir import metrics_dir_configure

from .base import *  # noqa: F403
from .base import Q_CLUSTER, REST_FRAMEWORK

# A test that starts a signal process with the exchange down must not wait the production 30 s.
STARTUP_EXCHANGE_WAIT = 2.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
# The suite makes thousands of requests from one address in one process; the
# throttling test sets its own small rate.
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "100000/min", "user": "100000/min"}}
# Templates render static URLs without a collectstatic manifest; the browser test against the
# Procfile's uvicorn runs with the real (hashed, compressed) storage.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Every event the suite produces is checked against its documented JSON Schema (docs/events/).
OUTBOX_VALIDATE = True
# Audit rows inline (one INSERT per call): a test runs in a transaction that a writer thread's own connection
# cannot join. The spool has its own tests (tests/exchange/test_audit_spool.py); processes a test starts use it.
EXCHANGE_AUDIT_SPOOL_DIR = ""
# Metrics: each test process writes its values into a directory of its own (not the checkout's var/metrics,
# which the processes a test starts may use), unless METRICS_DIR names one; no heartbeat thread inside the
# test process (processes a test starts run the base settings and do beat).
if not os.environ.get("METRICS_DIR"):
    METRICS_DIR = metrics_dir_configure(tempfile.mkdtemp(prefix="om-metrics-test-"))
    atexit.register(shutil.rmtree, METRICS_DIR, True)
PROCESS_HEARTBEAT_INTERVAL = 0
