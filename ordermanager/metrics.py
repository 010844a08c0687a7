"""Every Prometheus series of the service: its name, labels and help, and the one-line recorders the code calls.

Two kinds of series (docs/decisions/0525-metrics-multiprocess.md):
- events, recorded where they happen, in whichever process (counters, histograms, one live gauge): they go to
  the shared metrics directory (prometheus_client's multiprocess mode) and the web process adds them up;
- state, computed by the web process from the database (and the broker) when ``/metrics`` is scraped
  (``ordermanager.ops.metrics_collector``): backlog, oldest signal, last reconciliation, position validation,
  PnL, exposure, heartbeats, queue depth. Their names live here too, so ``METRIC_NAMES`` lists everything.

Names are exactly what dashboards and alert rules use (issue 15): a counter's name includes ``_total``; a
histogram ``X`` is exposed as ``X_bucket``, ``X_sum`` and ``X_count``. A recorder never raises: metrics must
not break an exchange call, a signal or a fill.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from django.db import transaction
from django.utils import timezone
from prometheus_client import Counter, Gauge, Histogram

log = structlog.get_logger(__name__)
_exec_ids_stored_since: Callable[[list[str], datetime], set[str]] | None = None  # see exec_ids_lookup_set

# --- state series (computed at scrape time, ordermanager.ops.metrics_collector) -------------------------------
SIGNAL_INBOX_BACKLOG = "ordermanager_signal_inbox_backlog"  # {symbol}
SIGNAL_INBOX_OLDEST_AGE = "ordermanager_signal_inbox_oldest_age_seconds"
SIGNAL_QUEUE_MESSAGES = "ordermanager_signal_queue_messages"
RECONCILIATION_DISCREPANCIES = "ordermanager_reconciliation_discrepancies"  # {kind}
POSITION_VALIDATION_DISCREPANCIES = "ordermanager_position_validation_discrepancies"
UNREALIZED_PNL = "ordermanager_unrealized_pnl"  # {symbol}
EXPOSURE_USDT = "ordermanager_exposure_usdt"
PROCESS_HEARTBEAT_AGE = "ordermanager_process_heartbeat_age_seconds"  # {process}

# --- event series (recorded by every process) -------------------------------------------------------------
SIGNALS_TOTAL = "ordermanager_signals_total"  # {status}
SIGNAL_TO_ACK = "ordermanager_signal_to_ack_seconds"
SIGNAL_OWN = "ordermanager_signal_own_seconds"
EXCHANGE_REQUEST = "ordermanager_exchange_request_seconds"  # {endpoint}
EXCHANGE_ERRORS_TOTAL = "ordermanager_exchange_errors_total"  # {endpoint, code}
EXCHANGE_RATE_LIMIT_WAIT_TOTAL = "ordermanager_exchange_rate_limit_wait_seconds_total"
FILLS_TOTAL = "ordermanager_fills_total"  # {exec_type}
FILL_LAG = "ordermanager_fill_lag_seconds"
GATEWAY_CONNECTIONS = "ordermanager_gateway_connections"

METRIC_NAMES = (
    SIGNAL_INBOX_BACKLOG, SIGNAL_INBOX_OLDEST_AGE, SIGNAL_QUEUE_MESSAGES, SIGNALS_TOTAL, SIGNAL_TO_ACK, SIGNAL_OWN,
    EXCHANGE_REQUEST, EXCHANGE_ERRORS_TOTAL, EXCHANGE_RATE_LIMIT_WAIT_TOTAL, FILLS_TOTAL, FILL_LAG,
    GATEWAY_CONNECTIONS, RECONCILIATION_DISCREPANCIES, POSITION_VALIDATION_DISCREPANCIES, UNREALIZED_PNL,
    EXPOSURE_USDT, PROCESS_HEARTBEAT_AGE,
)  # fmt: skip

# Signal latency: the processor acknowledges in tens of milliseconds; a queue falling behind shows in the tail.
_SIGNAL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# One HTTP request to Bybit: a few ms (simulator) to the client's 5 s timeout.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# execTime → applied: ws-gateway delivers in well under a second; a REST-recovered gap takes minutes.
_FILL_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

_signals = Counter(SIGNALS_TOTAL, "Signals that reached a terminal status, by status.", ["status"])
_signal_to_ack = Histogram(SIGNAL_TO_ACK, "Inbox arrival to exchange acknowledgement of an executed signal.",
                           buckets=_SIGNAL_BUCKETS)  # fmt: skip
_signal_own = Histogram(SIGNAL_OWN, "Inbox arrival to acknowledgement minus the exchange requests' round trips.",
                        buckets=_SIGNAL_BUCKETS)  # fmt: skip
_exchange_request = Histogram(EXCHANGE_REQUEST, "One HTTP request to the exchange (each attempt), by endpoint.",
                              ["endpoint"], buckets=_REQUEST_BUCKETS)  # fmt: skip
_exchange_errors = Counter(EXCHANGE_ERRORS_TOTAL, "Failed exchange requests by endpoint and code: the retCode, "
                           "else the HTTP status, else no_answer.", ["endpoint", "code"])  # fmt: skip
_rate_limit_wait = Counter(EXCHANGE_RATE_LIMIT_WAIT_TOTAL, "Seconds spent waiting for an exchange rate-limit window.")
_fills = Counter(FILLS_TOTAL, "Executions from the private stream applied to the book, by execType.", ["exec_type"])
_fill_lag = Histogram(FILL_LAG, "Now minus execTime when an execution from the private stream is applied.",
                      buckets=_FILL_LAG_BUCKETS)  # fmt: skip
# livesum: the connections of the web processes alive now (a dead process's value is dropped, 0525).
_gateway_connections = Gauge(GATEWAY_CONNECTIONS, "Authenticated ws-gateway connections.",
                             multiprocess_mode="livesum")  # fmt: skip

NO_ANSWER = "no_answer"
# Seconds of exchange round trips of the signal this thread is working on (own time = to-ack minus these).
_work = threading.local()


def _never_raises(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # a full disk or a bug here must not fail an order or a fill
            log.warning("metric_not_recorded", recorder=fn.__name__, error=f"{type(exc).__name__}: {exc}")
            return None

    return wrapper


# --- exchange (exchange/bybit/client.py) ------------------------------------------------------------------


def exchange_error_code(*, http_status: int | None, ret_code: int | None, failed: bool) -> str | None:
    """The ``code`` label of a failed request (None: it did not fail)."""
    if ret_code not in (None, 0):
        return str(ret_code)
    if http_status is None:
        return NO_ANSWER if failed else None
    if http_status != 200:
        return str(http_status)
    return NO_ANSWER if failed else None  # a 200 we could not read is as good as no answer


@_never_raises
def exchange_request_observe(*, endpoint: str, seconds: float, http_status: int | None, ret_code: int | None,
                             failed: bool) -> None:  # fmt: skip
    _exchange_request.labels(endpoint).observe(seconds)
    _work.exchange_seconds = getattr(_work, "exchange_seconds", 0.0) + seconds
    code = exchange_error_code(http_status=http_status, ret_code=ret_code, failed=failed)
    if code is not None:
        _exchange_errors.labels(endpoint, code).inc()


@_never_raises
def exchange_rate_limit_waited(seconds: float) -> None:
    if seconds > 0:
        _rate_limit_wait.inc(seconds)


# --- signals (signals_app/services) -----------------------------------------------------------------------


def signal_work_started() -> None:
    """A worker thread takes a signal: its exchange round trips are counted from here."""
    _work.exchange_seconds = 0.0


def signal_finished_on_commit(signal) -> None:
    """Count a signal's terminal status (and, when executed, its latencies) once the status is committed."""
    exchange_seconds = getattr(_work, "exchange_seconds", 0.0)
    transaction.on_commit(lambda: _signal_finished(signal.status, signal.received_at, signal.processed_at,
                                                   exchange_seconds))  # fmt: skip


@_never_raises
def _signal_finished(status: str, received_at, processed_at, exchange_seconds: float) -> None:
    _signals.labels(str(status)).inc()
    if str(status) != "executed" or received_at is None or processed_at is None:
        return
    # The signal is finished in the transaction that records its last leg's acknowledgement (processed_at).
    to_ack = max(0.0, (processed_at - received_at).total_seconds())
    _signal_to_ack.observe(to_ack)
    _signal_own.observe(max(0.0, to_ack - exchange_seconds))


# --- fills and the ws-gateway link (orders/consumers.py) --------------------------------------------------


@_never_raises
def fills_applied(message, outcome) -> None:
    """After the message's transaction committed: count its newly applied executions and their lag."""
    if not outcome.applied or getattr(message, "topic", "") != "execution":
        return
    now_ms = time.time() * 1000
    per_type: dict[str, int] = {}
    for info in _new_executions(message.items, outcome.applied):
        kind = info.exec_type or "Trade"
        per_type[kind] = per_type.get(kind, 0) + 1
        _fill_lag.observe(max(0.0, (now_ms - info.exec_time_ms) / 1000))
    for kind, count in per_type.items():  # one write per type, not per execution (each is a locked file write)
        _fills.labels(kind).inc(count)


def _new_executions(items, applied: int) -> list:
    seen: set[str] = set()
    unique = [i for i in items if not (i.exec_id in seen or seen.add(i.exec_id))]  # a repeated execId counts once
    if applied >= len(unique):
        return unique
    # Some were already stored (a resend): ask which ones were stored just now (one query on the unique index).
    # The count stays exact (``applied``); only an execId stored by another message within the minute could
    # lend its execType to one of ours, which is rare and harmless.
    if _exec_ids_stored_since is None:
        raise RuntimeError("no execution lookup installed (OrdersConfig.ready installs it)")
    new = _exec_ids_stored_since([i.exec_id for i in unique], timezone.now() - timedelta(minutes=1))
    return [i for i in unique if i.exec_id in new][:applied]


def exec_ids_lookup_set(lookup: Callable[[list[str], datetime], set[str]]) -> None:
    """Which of these execIds were stored since a moment: the executions are the orders app's, and this module
    is below every domain app (docs/decisions/0422), so ``OrdersConfig.ready`` installs the selector here."""
    global _exec_ids_stored_since
    _exec_ids_stored_since = lookup


@_never_raises
def gateway_connection_opened() -> None:
    _gateway_connections.inc()


@_never_raises
def gateway_connection_closed() -> None:
    _gateway_connections.dec()
