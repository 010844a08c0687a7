"""Test settings: everything from base, with jobs synchronous and hashing fast."""

import atexit
import os
import shutil
import tempfile
from urllib.parse import urlsplit, urlunsplit

from ordermanager.metrics_dir import metrics_dir_configure

from .base import *  # noqa: F403
from .base import Q_CLUSTER, REDIS_URL, REST_FRAMEWORK

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
# The test process keeps Python's collector whatever it imports (ordermanager.asgi applies the policy); the
# processes a test starts run the base settings, under the policy (docs/decisions/0331).
GC_GEN0_THRESHOLD = 0

# pytest-xdist (`make test` runs the suite on several workers): pytest-django gives each worker its own test
# database; the Channels layer gets its own Redis database too, so one worker's dashboard groups and channels
# never see another's (docs/decisions/0007). Worker N of W uses db (base + N * 16 // W) % 16; the environment
# is updated as well, so the redis_url fixture and the child processes the tests start use the same database.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if REDIS_URL and _XDIST_WORKER.startswith("gw"):
    _url = urlsplit(REDIS_URL)
    _base_db = int(_url.path.strip("/") or 0)
    _workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    _db = (_base_db + int(_XDIST_WORKER[2:]) * max(16 // _workers, 1)) % 16
    REDIS_URL = urlunsplit(_url._replace(path=f"/{_db}"))
    os.environ["REDIS_URL"] = REDIS_URL
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
