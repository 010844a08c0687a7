"""Every setting of the service, read from the environment (and an optional .env).

Everything lives here behind env switches (no production-only module); the
readers in ``ordermanager.env`` stop the process on a bad value with a line
that names the variable. ``env.example`` documents each variable.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import environ

from ordermanager.env import (
    ConfigError,
    env_bool,
    env_choice,
    env_decimal,
    env_float_seconds,
    env_int,
    env_json_object,
    env_money,
    env_networks,
    env_secret,
    env_str,
    read_dotenv,
)
from ordermanager.exchange_hosts import bybit_url_problem
from ordermanager.metrics_dir import metrics_dir_configure

BASE_DIR = Path(__file__).resolve().parent.parent.parent
read_dotenv(BASE_DIR / ".env")

# --- Django core -----------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
# Read early: the paper setup (simulator) is the only one allowed to run without real secrets.
BYBIT_ENV = env_choice("BYBIT_ENV", "simulator", ("mainnet", "testnet", "demo", "simulator"))
PAPER = BYBIT_ENV == "simulator"
SECRET_KEY = env_secret("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not PAPER or env_bool("REQUIRE_SECRET_KEY", False):
        raise ConfigError(
            f"DJANGO_SECRET_KEY is empty; set it (or DJANGO_SECRET_KEY_FILE): BYBIT_ENV={BYBIT_ENV!r} is not paper"
        )
    # Paper setup only: a per-checkout key so `make run` needs no setup (docs/decisions/0520).
    SECRET_KEY = "insecure-paper-only-" + str(BASE_DIR)
# HTTPS=true: the service sits behind a TLS-terminating proxy that sets X-Forwarded-Proto.
HTTPS = env_bool("HTTPS", BYBIT_ENV == "mainnet")
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Health probes come from inside (plain HTTP to the process): they must not be redirected.
    SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Web port of `make run` (uvicorn); every URL printed or registered follows it. honcho gives
# each Procfile process its own PORT, so the Makefile hands the web port on as WEB_PORT.
WEB_PORT = env_int("WEB_PORT", env_int("PORT", 8000, minimum=1, maximum=65535), minimum=1, maximum=65535)
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, no CDN
    "channels",
    "django_q",
    "ordermanager.core.apps.CoreConfig",
    "exchange",
    "positions",
    "orders",
    "signals_app",
    "ordermanager.ops.apps.OpsConfig",  # the top: reads every app (docs/decisions/0422)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin CSS/JS, Swagger UI) from the ASGI app itself, hashed and compressed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ordermanager.urls"
WSGI_APPLICATION = "ordermanager.wsgi.application"
ASGI_APPLICATION = "ordermanager.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------
# SQLite is the embedded default; PostgreSQL is production and CI (see
# docs/decisions/0002-sqlite-embedded-postgres-truth.md for what SQLite lacks).
_db_url = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'ordermanager.sqlite3'}")
try:
    DATABASES = {"default": environ.Env.db_url_config(_db_url)}
except Exception as exc:  # environ raises several types for a malformed URL
    raise ConfigError(f"DATABASE_URL is not a valid database URL ({exc.__class__.__name__})") from None
_engine = DATABASES["default"]["ENGINE"]
if _engine not in ("django.db.backends.sqlite3", "django.db.backends.postgresql"):
    raise ConfigError(f"DATABASE_URL uses {_engine!r}; use sqlite:/// or postgres://")
DATABASE_IS_POSTGRES = _engine == "django.db.backends.postgresql"
if DATABASE_IS_POSTGRES:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # WAL + a busy timeout let the web server, the processor and qcluster share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
# The hot paths' fixed statements (built once per process) are bound server side and prepared once per
# connection (ordermanager.core.sql_once.fixed_cursor, docs/decisions/0329). Turn off behind a pooler in
# transaction mode that does not keep prepared statements (PgBouncer before 1.21, or without
# max_prepared_statements).
DATABASE_PREPARE = DATABASE_IS_POSTGRES and env_bool("DATABASE_PREPARE", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The collector in the service processes (web, consume_signals, process_signals): what the start left alive
# is frozen and the young generation is collected every this many net allocations instead of Python's 700
# (docs/decisions/0331: collections were a fifth of the fill ingest's CPU). 0 = Python's defaults.
GC_GEN0_THRESHOLD = env_int("GC_GEN0_THRESHOLD", 50_000, minimum=0, maximum=10_000_000)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise scans it at startup (filled by collectstatic)
WHITENOISE_ROOT = BASE_DIR / "ordermanager" / "public"  # /favicon.ico, which every browser asks for
# `collectstatic` (make run / make install) writes hashed, gzip-compressed copies; WhiteNoise serves
# them with far-future caching. Tests render templates without a manifest (see settings.test).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "ordermanager.core.static_storage.StaticFilesStorage"},
}
# Before collectstatic has run, WhiteNoise serves the apps' own static folders (plain names, no far-future
# caching) so the admin is never unstyled or a 500 (ordermanager/core/static_storage.py).
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/admin/login/"
# Admin login throttle (ordermanager/core/login_throttle.py): failures per username within the window.
ADMIN_LOGIN_MAX_FAILURES = env_int("ADMIN_LOGIN_MAX_FAILURES", 5, minimum=1)
ADMIN_LOGIN_LOCKOUT_SECONDS = env_int("ADMIN_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)

# --- Logging (structlog; JSON in production, readable on a terminal) ---------
LOG_FORMAT = env_choice("LOG_FORMAT", "console", ("console", "json"))
LOG_LEVEL = env_choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": "ordermanager.logging.make_formatter",
            "json": LOG_FORMAT == "json",
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "amqp": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
        # Its debug lines hold whole frames (a fill batch, an auth frame): quiet even at LOG_LEVEL=debug.
        "websockets": {"level": "INFO"},
    },
}

# --- DRF / OpenAPI -----------------------------------------------------------
def _throttle_rate(name: str, default: str) -> str:
    value = env_str(name, default)
    count, _, period = value.partition("/")
    if not (count.isdigit() and period in ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")):
        raise ConfigError(f"{name}={value!r} is not a rate; use <count>/<second|minute|hour|day>, e.g. 600/min")
    return value


REST_FRAMEWORK = {
    # Services send `Authorization: Api-Key <key>` (hashed at rest, revocable in the admin); staff use
    # their admin session in the browsable API. API-key auth is first so a missing login answers 401.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "ordermanager.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ordermanager.api.exception_handler.handle",
    "COERCE_DECIMAL_TO_STRING": True,
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": _throttle_rate("API_THROTTLE_ANON", "60/min"),
        "user": _throttle_rate("API_THROTTLE_USER", "1200/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Order Manager API",
    "DESCRIPTION": "Signals in, orders on Bybit out; orders, fills, positions and PnL.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI list every operation: only a staff login or an API key may read them.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "status"; name each choice set after its model (schema stays stable).
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.models.OrderStatus",
        "SignalStatusEnum": "signals_app.models.SignalStatus",
        "ReconciliationStatusEnum": "orders.models.ReconciliationRun.Status",
        "CancelReasonEnum": "orders.models.CancelReason",
        "LegRoleEnum": "orders.models.LegRole",
        "ComponentStatusEnum": "ordermanager.ops.api.health.COMPONENT_STATES",
        "HealthStatusEnum": "ordermanager.ops.api.health.OVERALL_STATES",
    },
}

# --- Channels ------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- django-q2 (ORM broker on the service's own database) -----------------------
Q_CLUSTER = {
    "name": "ordermanager",
    "orm": "default",
    "workers": env_int("QCLUSTER_WORKERS", 2, minimum=1),
    "timeout": env_int("QCLUSTER_TIMEOUT", 300, minimum=10),
    "retry": env_int("QCLUSTER_TIMEOUT", 300, minimum=10) + 60,
    "max_attempts": 1,
    "catch_up": False,
    "sync": env_bool("QCLUSTER_SYNC", False),
}

# --- AMQP (signals in, events out) ----------------------------------------------
# Empty SIGNAL_BROKER_URL = the embedded default: no bus, signals enter through
# POST /api/signals/ and `manage.py send_signal` straight into the inbox.
SIGNAL_BROKER_URL = env_str("SIGNAL_BROKER_URL", "")
if SIGNAL_BROKER_URL and not SIGNAL_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    raise ConfigError(f"SIGNAL_BROKER_URL={SIGNAL_BROKER_URL.split('@')[-1]!r} must be an amqp:// URL (or empty)")
SIGNAL_QUEUE = env_str("SIGNAL_QUEUE", "model-service.trading_signals")
SIGNAL_DEAD_LETTER_QUEUE = env_str("SIGNAL_DEAD_LETTER_QUEUE", SIGNAL_QUEUE + ".dead")
# Arguments used when consume_signals is the first to declare the ingress queue (an existing queue is consumed
# as it was declared). Default: what the model service declares, durable and nothing else. JSON object, e.g.
# {"x-queue-type": "quorum"}. See docs/decisions/0320-ingress-queue-as-declared.md.
SIGNAL_QUEUE_ARGUMENTS = env_json_object("SIGNAL_QUEUE_ARGUMENTS", "{}")
# Arguments of the dead-letter queue when we declare it (it is ours). In a cluster use {"x-queue-type": "quorum"}:
# a classic queue lives on one node, and while that node is down intake cannot dead-letter (and waits).
SIGNAL_DEAD_LETTER_QUEUE_ARGUMENTS = env_json_object("SIGNAL_DEAD_LETTER_QUEUE_ARGUMENTS", "{}")
# Seconds between a standby consume_signals' attempts to become the queue's one active intake.
SIGNAL_STANDBY_RETRY = env_float_seconds("SIGNAL_STANDBY_RETRY", "1", minimum="0.05")
SIGNAL_PREFETCH = env_int("SIGNAL_PREFETCH", 50, minimum=1, maximum=10000)
ORDER_EVENTS_EXCHANGE = env_str("ORDER_EVENTS_EXCHANGE", "order-manager.events")
# Events out go through the transactional outbox (docs/decisions/0321). The relay runs as a thread of
# consume_signals and process_signals (one active across processes) unless OUTBOX_RELAY=false, e.g. when
# `manage.py relay_events` runs on its own.
OUTBOX_RELAY = env_bool("OUTBOX_RELAY", True)
OUTBOX_RETENTION_HOURS = env_int("OUTBOX_RETENTION_HOURS", 168, minimum=1)
OUTBOX_POLL_INTERVAL = env_float_seconds("OUTBOX_POLL_INTERVAL", "0.2", minimum="0.01")
# Health says "stale" when the oldest unsent event is older than this (the relay or the broker is stuck).
OUTBOX_LAG_STALE_SECONDS = env_int("OUTBOX_LAG_STALE_SECONDS", 60, minimum=1)
OUTBOX_BATCH = env_int("OUTBOX_BATCH", 200, minimum=1, maximum=10000)
# Check every event against its JSON Schema in docs/events/ when it is written (the test suite turns it on).
OUTBOX_VALIDATE = env_bool("OUTBOX_VALIDATE", False)
SIGNAL_MAX_CLOCK_SKEW = env_int("SIGNAL_MAX_CLOCK_SKEW", 30, minimum=0)
# Worker threads per process that turn inbox signals into orders (one symbol per thread at a time).
# 8 on PostgreSQL: a position-dependent decision waits for its symbol's previous fills (0316, 0327), and more
# workers keep more symbols moving meanwhile (a burst over 20 symbols: 74 → 94 signals/s from 4 to 8, no gain
# at 16; docs/decisions/0329). The embedded SQLite has one writer at a time: 4.
SIGNAL_PROCESSOR_THREADS = env_int("SIGNAL_PROCESSOR_THREADS", 8 if DATABASE_IS_POSTGRES else 4, minimum=1, maximum=64)
# Seconds between a processor worker's looks at the inbox when no wake-up came (the safety net, docs/decisions/0326).
SIGNAL_PROCESSOR_POLL_SECONDS = env_float_seconds("SIGNAL_PROCESSOR_POLL_SECONDS", "0.5", minimum="0.01")
# Seconds between the heartbeats of consume_signals/process_signals (dashboard: consumer health).
SIGNAL_HEARTBEAT_INTERVAL = env_float_seconds("SIGNAL_HEARTBEAT_INTERVAL", "5", minimum="0.1")

# --- Exchange ----------------------------------------------------------------------
BYBIT_BASE_URL = env_str("BYBIT_BASE_URL", "").rstrip("/")
if BYBIT_BASE_URL and not PAPER:
    _url_problem = bybit_url_problem(BYBIT_BASE_URL)
    if _url_problem:
        raise ConfigError(f"BYBIT_BASE_URL={BYBIT_BASE_URL!r} {_url_problem} (allowed only with BYBIT_ENV=simulator)")
BYBIT_API_KEY = env_secret("BYBIT_API_KEY", "")
BYBIT_API_SECRET = env_secret("BYBIT_API_SECRET", "")
BYBIT_RECV_WINDOW = env_int("BYBIT_RECV_WINDOW", 5000, minimum=1000, maximum=60000)
BYBIT_HTTP_TIMEOUT = env_float_seconds("BYBIT_HTTP_TIMEOUT", "5", minimum="0.1")
BYBIT_CATEGORY = env_choice("BYBIT_CATEGORY", "linear", ("linear", "spot"))
# Audit of exchange calls (docs/decisions/0206, 0208). Rows older than the retention are pruned by a django-q2
# job every EXCHANGE_CALL_PRUNE_INTERVAL seconds, EXCHANGE_CALL_PRUNE_BATCH rows per short transaction.
EXCHANGE_CALL_RETENTION_DAYS = env_int("EXCHANGE_CALL_RETENTION_DAYS", 30, minimum=1, maximum=3650)
EXCHANGE_CALL_PRUNE_BATCH = env_int("EXCHANGE_CALL_PRUNE_BATCH", 1000, minimum=1, maximum=100000)
EXCHANGE_CALL_PRUNE_INTERVAL = env_int("EXCHANGE_CALL_PRUNE_INTERVAL", 3600, minimum=60, maximum=7 * 86400)
# The response body kept on each row is cut to this many bytes (UTF-8); 0 keeps only its size.
EXCHANGE_CALL_RESPONSE_MAX_BYTES = env_int("EXCHANGE_CALL_RESPONSE_MAX_BYTES", 16384, minimum=0, maximum=1048576)
# Audit rows are appended to a per-process spool file here (one sub-directory per database) and written to the
# database by a thread; a process that dies leaves its file to the next one. Empty: one INSERT per call, inline.
EXCHANGE_AUDIT_SPOOL_DIR = env_str("EXCHANGE_AUDIT_SPOOL_DIR", str(BASE_DIR / "var" / "exchange-audit"))
# fsync each spooled row: survives a machine crash too, at the cost of a disk flush per exchange call.
EXCHANGE_AUDIT_SPOOL_FSYNC = env_bool("EXCHANGE_AUDIT_SPOOL_FSYNC", False)
BYBIT_API_RETRY_MAX_ATTEMPTS = env_int("BYBIT_API_RETRY_MAX_ATTEMPTS", 3, minimum=1, maximum=20)
BYBIT_API_RETRY_BASE_DELAY = env_float_seconds("BYBIT_API_RETRY_BASE_DELAY", "1.0")
BYBIT_API_RETRY_MAX_DELAY = env_float_seconds("BYBIT_API_RETRY_MAX_DELAY", "30.0")
BYBIT_API_RETRY_MULTIPLIER = float(env_decimal("BYBIT_API_RETRY_MULTIPLIER", "2.0", minimum="1"))
if BYBIT_API_RETRY_MAX_DELAY < BYBIT_API_RETRY_BASE_DELAY:
    raise ConfigError(
        f"BYBIT_API_RETRY_MAX_DELAY={BYBIT_API_RETRY_MAX_DELAY} is out of range: "
        f"must be at least BYBIT_API_RETRY_BASE_DELAY={BYBIT_API_RETRY_BASE_DELAY}"
    )
INSTRUMENT_CACHE_TTL = env_int("INSTRUMENT_CACHE_TTL", 3600, minimum=0)
# The built-in simulator (paper exchange of the embedded default).
SIMULATOR_HOST = env_str("SIMULATOR_HOST", "127.0.0.1")
SIMULATOR_PORT = env_int("SIMULATOR_PORT", 8765, minimum=1, maximum=65535)
# Paper credentials of the simulator (never BYBIT_API_KEY/SECRET, which may be live keys).
SIMULATOR_API_KEY = env_str("SIMULATOR_API_KEY", "sim-key")
SIMULATOR_API_SECRET = env_str("SIMULATOR_API_SECRET", "sim-secret")
if PAPER and not BYBIT_API_KEY:
    # The client signs with the simulator's paper credentials; it checks signatures like Bybit does.
    BYBIT_API_KEY, BYBIT_API_SECRET = SIMULATOR_API_KEY, SIMULATOR_API_SECRET
if BYBIT_ENV != "simulator" and not BYBIT_BASE_URL and not (BYBIT_API_KEY and BYBIT_API_SECRET):
    raise ConfigError(f"BYBIT_ENV={BYBIT_ENV!r} needs BYBIT_API_KEY and BYBIT_API_SECRET (or their _FILE forms)")

# --- Trading rules (design notes) ---------------------------------------------------
ENABLE_DRY_RUN = env_bool("ENABLE_DRY_RUN", False)
MAX_SINGLE_ORDER_SIZE = env_decimal("MAX_SINGLE_ORDER_SIZE", "10000", minimum="0", exclusive_minimum=True)
ENABLE_ORDER_SPLITTING = env_bool("ENABLE_ORDER_SPLITTING", False)
ORDER_EXECUTION_TIMEOUT = env_float_seconds("ORDER_EXECUTION_TIMEOUT", "30", minimum="1")
# Seeds of the global RiskLimit row (decision 0317): size in base units (unset: no limit), value and exposure
# in USDT. Resting orders on the side that would grow a position count towards each.
MAX_POSITION_SIZE = env_money("MAX_POSITION_SIZE", None, unit="base units", optional=True)
MAX_POSITION_VALUE = env_money("MAX_POSITION_VALUE", "50000", unit="USDT", optional=True)
MAX_EXPOSURE = env_money("MAX_EXPOSURE", "200000", unit="USDT")
MAX_ORDER_SIZE_RATIO = env_decimal("MAX_ORDER_SIZE_RATIO", "0.5", minimum="0", maximum="1")
MARKET_ORDER_CONFIDENCE_THRESHOLD = env_decimal("MARKET_ORDER_CONFIDENCE_THRESHOLD", "0.9", minimum="0", maximum="1")
MARKET_ORDER_SPREAD_THRESHOLD = env_decimal("MARKET_ORDER_SPREAD_THRESHOLD", "0.1", minimum="0", maximum="100")
LIMIT_ORDER_PRICE_OFFSET_RATIO = env_decimal("LIMIT_ORDER_PRICE_OFFSET_RATIO", "0.5", minimum="0", maximum="1")
ALLOW_SHORT = env_bool("ALLOW_SHORT", False)
CANCEL_OPPOSITE_ORDERS_ONLY = env_bool("CANCEL_OPPOSITE_ORDERS_ONLY", False)
CANCEL_PARTIALLY_FILLED_ORDERS = env_bool("CANCEL_PARTIALLY_FILLED_ORDERS", False)
CANCEL_STALE_ORDER_TIMEOUT = env_int("CANCEL_STALE_ORDER_TIMEOUT", 3600, minimum=1)
POSITION_SNAPSHOT_INTERVAL = env_int("POSITION_SNAPSHOT_INTERVAL", 300, minimum=1)
POSITION_VALIDATION_INTERVAL = env_int("POSITION_VALIDATION_INTERVAL", 3600, minimum=1)
# Between the full validations, only the symbols with fills or ledger rows since the last run (docs/decisions/0515).
POSITION_VALIDATION_INCREMENTAL_INTERVAL = env_int("POSITION_VALIDATION_INCREMENTAL_INTERVAL", 300, minimum=1)
# The PnL report reads closed days from their stored sums (orders.services.pnl_days, docs/decisions/0515).
PNL_DAYS_REFRESH_INTERVAL = env_int("PNL_DAYS_REFRESH_INTERVAL", 3600, minimum=1)
UNREALIZED_LOSS_WARNING_THRESHOLD = env_decimal("UNREALIZED_LOSS_WARNING_THRESHOLD", "10", minimum="0", maximum="100")
# Holds (docs/decisions/0315): how long a symbol may wait on an order whose create outcome is unknown before
# the order is given up (recorded failed; adopted by reconciliation if the exchange shows it), and the first
# pause between its lookups by orderLinkId (doubling, at most 30 s).
ORDER_HOLD_MAX_SECONDS = env_float_seconds("ORDER_HOLD_MAX_SECONDS", "120", minimum="1")
ORDER_HOLD_LOOKUP_BACKOFF_SECONDS = env_float_seconds("ORDER_HOLD_LOOKUP_BACKOFF_SECONDS", "1.0", minimum="0.05")
# Fresh positions (docs/decisions/0316): how long a position-dependent decision waits for the fills of the
# symbol's acknowledged orders before it reads the position from the exchange instead (0 = read at once).
POSITION_FILLS_WAIT_SECONDS = env_float_seconds("POSITION_FILLS_WAIT_SECONDS", "1.0")
PENDING_SUBMIT_RETRY_WINDOW = env_int("PENDING_SUBMIT_RETRY_WINDOW", 60, minimum=0)
# Minutes between scheduled reconciliation runs (0 = no schedule; startup, command, admin and API still run it).
# Pause between the comparisons that must agree before a position difference is judged.
RECONCILE_SETTLE_SECONDS = env_float_seconds("RECONCILE_SETTLE_SECONDS", "1.0")
# Seconds a starting signal process waits for the exchange to answer before its startup reconciliation.
STARTUP_EXCHANGE_WAIT = env_float_seconds("STARTUP_EXCHANGE_WAIT", "30")
RECONCILE_INTERVAL_MINUTES = env_int("RECONCILE_INTERVAL_MINUTES", 0, minimum=0, maximum=1440)
# Continuous reconciliation (docs/decisions/0606), run by every long-lived worker process; one process
# takes each pass. Light pass: open orders, positions and recent executions compared (0 = off).
RECONCILE_LIGHT_INTERVAL = env_int("RECONCILE_LIGHT_INTERVAL", 60, minimum=0, maximum=86400)
# How often a process looks for in-flight orders gone quiet and symbols marked for backfill (0 = off).
RECONCILE_INFLIGHT_CHECK_INTERVAL = env_int("RECONCILE_INFLIGHT_CHECK_INTERVAL", 5, minimum=0, maximum=3600)
# An order pending_submit / pending_cancel / new with no event for this long is looked up by orderLinkId.
RECONCILE_INFLIGHT_SECONDS = env_int("RECONCILE_INFLIGHT_SECONDS", 30, minimum=1, maximum=86400)
# At most this many symbols get a targeted (symbol-scoped) run per pass; the rest wait for the next.
RECONCILE_TARGETED_MAX_SYMBOLS = env_int("RECONCILE_TARGETED_MAX_SYMBOLS", 5, minimum=1, maximum=1000)
# Writes kept in memory while the database is unreachable (ws-gateway messages, exchange-call audit rows),
# per process; past the bound the affected symbols are marked for a targeted backfill.
DB_OUTAGE_BACKLOG_MAX = env_int("DB_OUTAGE_BACKLOG_MAX", 10000, minimum=1, maximum=1000000)
# Startup: longest pause between attempts while waiting for the database and the broker.
STARTUP_WAIT_MAX_DELAY = env_float_seconds("STARTUP_WAIT_MAX_DELAY", "10")
# On a requested stop, how long a process still tries to write what it holds for the database (then logs
# what is lost). Without a stop request a process does not exit while such writes wait (decision 0006).
DB_BACKLOG_EXIT_GRACE = env_float_seconds("DB_BACKLOG_EXIT_GRACE", "10")
# Test hook / fault drills only (empty in production): the first startup attempt that reaches the step
# STARTUP_PAUSE_STEP writes <STARTUP_PAUSE_DIR>/<step>.paused and holds until <step>.resume exists.
STARTUP_PAUSE_STEP = env_str("STARTUP_PAUSE_STEP", "")
STARTUP_PAUSE_DIR = env_str("STARTUP_PAUSE_DIR", "")

# --- ws-gateway ---------------------------------------------------------------------
WS_GATEWAY_HOST = env_str("WS_GATEWAY_HOST", "")
WS_GATEWAY_PORT = env_int("WS_GATEWAY_PORT", 8080, minimum=1, maximum=65535)
WS_GATEWAY_API_KEY = env_secret("WS_GATEWAY_API_KEY", "")
if BYBIT_ENV == "simulator" and not WS_GATEWAY_API_KEY:
    # Paper key shared by the simulator's ws-gateway role and our endpoint (make run).
    WS_GATEWAY_API_KEY = "sim-gateway-key"
# Where ws-gateway pushes private-stream messages (our Channels endpoint, orders/consumers.py).
WS_GATEWAY_CALLBACK_URL = env_str("WS_GATEWAY_CALLBACK_URL", f"ws://127.0.0.1:{WEB_PORT}/ws/gateway/")
if not WS_GATEWAY_CALLBACK_URL.startswith(("ws://", "wss://")):
    raise ConfigError(f"WS_GATEWAY_CALLBACK_URL={WS_GATEWAY_CALLBACK_URL!r} must be a ws:// or wss:// URL")
# django-q2 job intervals in seconds (schedules run at minute resolution; see setup_schedules).
MARK_PRICE_REFRESH_INTERVAL = env_int("MARK_PRICE_REFRESH_INTERVAL", 60, minimum=1)
LOSS_WARNING_CHECK_INTERVAL = env_int("LOSS_WARNING_CHECK_INTERVAL", 60, minimum=1)
STALE_ORDER_SWEEP_INTERVAL = env_int("STALE_ORDER_SWEEP_INTERVAL", 60, minimum=1)

# --- Alerts and health (docs/decisions/0524) ----------------------------------------------
# Thresholds evaluated from the database (ordermanager/ops/alerts.py): a breach turns health
# "degraded" with the reason, shows a dashboard banner and publishes one ops.alert event when it starts
# firing and one when it resolves. deploy/prometheus/alerts.yml holds the same thresholds as Prometheus rules.
ALERT_INBOX_BACKLOG = env_int("ALERT_INBOX_BACKLOG", 500, minimum=1)  # unfinished signals (received/processing)
ALERT_SIGNAL_AGE_SECONDS = env_float_seconds("ALERT_SIGNAL_AGE_SECONDS", "120", minimum="1")  # oldest unfinished
# Fill lag: the slowest recent stream fill (applied − execTime over the window) or the oldest acknowledged
# market order still waiting for its fill, whichever is larger.
ALERT_FILL_LAG_SECONDS = env_float_seconds("ALERT_FILL_LAG_SECONDS", "60", minimum="1")
ALERT_FILL_LAG_WINDOW_SECONDS = env_int("ALERT_FILL_LAG_WINDOW_SECONDS", 300, minimum=10, maximum=86400)
# Exchange error rate: failed / all audited exchange calls over the window, judged from this many calls on.
ALERT_EXCHANGE_ERROR_RATE = env_decimal("ALERT_EXCHANGE_ERROR_RATE", "0.2", minimum="0", maximum="1",
                                        exclusive_minimum=True)
ALERT_EXCHANGE_ERROR_WINDOW_SECONDS = env_int("ALERT_EXCHANGE_ERROR_WINDOW_SECONDS", 300, minimum=10, maximum=86400)
ALERT_EXCHANGE_ERROR_MIN_CALLS = env_int("ALERT_EXCHANGE_ERROR_MIN_CALLS", 10, minimum=1)
ALERT_HEARTBEAT_AGE_SECONDS = env_float_seconds("ALERT_HEARTBEAT_AGE_SECONDS", "60", minimum="1")
if ALERT_HEARTBEAT_AGE_SECONDS <= 2 * SIGNAL_HEARTBEAT_INTERVAL:
    raise ConfigError(
        f"ALERT_HEARTBEAT_AGE_SECONDS={ALERT_HEARTBEAT_AGE_SECONDS:g} is out of range: must be more than twice "
        f"SIGNAL_HEARTBEAT_INTERVAL={SIGNAL_HEARTBEAT_INTERVAL:g} (else a healthy process would alert between beats)"
    )
# Seconds between the scheduled evaluations (django-q2, minute resolution); health requests evaluate too.
ALERT_EVALUATION_INTERVAL = env_int("ALERT_EVALUATION_INTERVAL", 60, minimum=1)
# /health/ready: how long the broker check may take to connect, and how old the last exchange call may be.
HEALTH_BROKER_TIMEOUT = env_float_seconds("HEALTH_BROKER_TIMEOUT", "2", minimum="0.1")
HEALTH_EXCHANGE_MAX_AGE_SECONDS = env_int("HEALTH_EXCHANGE_MAX_AGE_SECONDS", 600, minimum=1)

# --- Metrics (GET /metrics, Prometheus; docs/decisions/0525) --------------------------------
# Every process writes its counters and histograms into files in this directory (prometheus_client's
# multiprocess mode) and the web process adds them up for a scrape. Local to one host; emptied when the
# service starts (`make run`: `manage.py metrics_reset`). Set before prometheus_client is imported anywhere.
METRICS_DIR = metrics_dir_configure(env_str("METRICS_DIR", str(BASE_DIR / "var" / "metrics")))
# Client addresses (CIDR list, e.g. "10.0.0.0/8,127.0.0.1/32") that may scrape /metrics without credentials;
# anyone else needs a staff login or an API key (Authorization: Api-Key <key>).
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_NETWORKS", "")
# Seconds between the `process:<name>` heartbeats of each long-running process (0 = none).
PROCESS_HEARTBEAT_INTERVAL = env_float_seconds("PROCESS_HEARTBEAT_INTERVAL", "5")

# --- Bootstrap admin (make run) -------------------------------------------------------
ADMIN_USERNAME = env_str("ADMIN_USERNAME", "admin")

# Quantities/prices are DecimalFields of this shape everywhere; see
# docs/decisions/0001-decimal-precision.md.
DECIMAL_ZERO = Decimal("0")
