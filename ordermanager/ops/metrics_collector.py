"""What a scrape of ``/metrics`` shows: every process's recorded series plus the state read at scrape time.

``metrics_render()`` runs in the web process. It adds up the value files of every process (prometheus_client's
``MultiProcessCollector``; the live gauges of processes that died are dropped first) and asks
``StateCollector`` for the series that are facts of the database (a few indexed queries) and of the broker
(a passive declare of the signal queue, bounded by ``QUEUE_PROBE_TIMEOUT``). A part that cannot be read (the
database or the broker away) is left out of that scrape and logged; the rest is still served.
See docs/decisions/0525-metrics-multiprocess.md.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from ordermanager import metrics as m
from ordermanager.core.models import Heartbeat
from ordermanager.dashboard.selectors import exposure_by_symbol
from ordermanager.metrics_dir import ENV_VAR
from ordermanager.metrics_process import PROCESS_PREFIX, dead_processes_forget
from orders.models import Discrepancy, ReconciliationRun
from positions.models import Position, PositionDiscrepancy
from signals_app.models import SignalStatus, TradingSignal

log = structlog.get_logger(__name__)

QUEUE_PROBE_TIMEOUT = 2.0  # seconds: connect, and each read/write of the passive declare


def _unfinished():
    return (SignalStatus.RECEIVED, SignalStatus.PROCESSING)


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _number(value: Decimal) -> float:
    # Prometheus samples are floats; the books stay Decimal, only the exposition converts.
    return float(value)


class StateCollector:
    """Series that are facts of the database and the broker, read when scraped."""

    def describe(self):
        return []  # nothing to check at registration (and no query then)

    def collect(self):
        now = timezone.now()
        for part in (self._inbox, self._reconciliation, self._position_validation, self._positions,
                     self._heartbeats, self._queue):  # fmt: skip
            try:
                yield from part(now)
            except Exception as exc:  # the database or the broker away: this part is missing from this scrape
                log.warning("metrics_part_unavailable", part=part.__name__.lstrip("_"),
                            error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip

    def _inbox(self, now: datetime):
        unfinished = TradingSignal.objects.filter(status__in=_unfinished())
        # Status-indexed: unfinished signals are few however large the inbox grows.
        per_symbol = dict(unfinished.values_list("asset").annotate(n=Count("id")).order_by())
        oldest = unfinished.aggregate(oldest=Min("received_at"))["oldest"]
        # Symbols with a position show 0 instead of vanishing when their backlog is drained.
        known = set(Position.objects.values_list("symbol", flat=True).distinct())
        backlog = _gauge(m.SIGNAL_INBOX_BACKLOG, "Unfinished signals (received or processing) by symbol.", ["symbol"])
        for symbol in sorted(known | set(per_symbol)):
            backlog.add_metric([symbol], per_symbol.get(symbol, 0))
        age = _gauge(m.SIGNAL_INBOX_OLDEST_AGE, "Age of the oldest unfinished signal (0 when none).")
        age.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
        yield backlog
        yield age

    def _reconciliation(self, now: datetime):
        last = (ReconciliationRun.objects.exclude(status=ReconciliationRun.Status.RUNNING)
                .order_by("-started_at", "-id").only("id").first())  # fmt: skip
        family = _gauge(m.RECONCILIATION_DISCREPANCIES, "Discrepancies found by the last finished reconciliation "
                        "run, by kind.", ["kind"])  # fmt: skip
        if last is not None:
            kinds = Discrepancy.objects.filter(run_id=last.pk).values_list("kind").annotate(n=Count("id")).order_by()
            for kind, count in sorted(kinds):
                family.add_metric([kind], count)
        yield family

    def _position_validation(self, now: datetime):
        # Validation runs every POSITION_VALIDATION_INTERVAL (and at start_ingest): what its latest round found.
        since = now - timedelta(seconds=settings.POSITION_VALIDATION_INTERVAL)
        count = PositionDiscrepancy.objects.filter(detected_at__gte=since).count()
        family = _gauge(m.POSITION_VALIDATION_DISCREPANCIES, "Positions that differed from their fills in the last "
                        "POSITION_VALIDATION_INTERVAL.")  # fmt: skip
        family.add_metric([], count)
        yield family

    def _positions(self, now: datetime):
        rows = exposure_by_symbol()  # the dashboard's own figures: open positions, notional at the mark
        pnl = _gauge(m.UNREALIZED_PNL, "Unrealized PnL of the open position, by symbol (USDT).", ["symbol"])
        for row in rows:
            pnl.add_metric([row.symbol], _number(row.unrealized_pnl))
        exposure = _gauge(m.EXPOSURE_USDT, "Total notional of the open positions at the mark price (USDT).")
        exposure.add_metric([], _number(sum((r.notional for r in rows), Decimal(0))))
        yield pnl
        yield exposure

    def _heartbeats(self, now: datetime):
        # Every heartbeat row: each process's own (``process:<name>``, shown as <name>) and the components that
        # beat too (the signal pipeline's ``consumer``, the ``ws_gateway`` link), as the alert thresholds see them.
        beats = Heartbeat.objects.values_list("component", "beat_at")
        family = _gauge(m.PROCESS_HEARTBEAT_AGE, "Seconds since the last heartbeat of each long-running process "
                        "(and of the consumer and ws_gateway components).", ["process"])  # fmt: skip
        for component, last in sorted(beats):
            family.add_metric([component.removeprefix(PROCESS_PREFIX)], max(0.0, (now - last).total_seconds()))
        yield family

    def _queue(self, now: datetime):
        if not settings.SIGNAL_BROKER_URL:
            return  # no broker: signals enter straight into the inbox, there is no queue to measure
        family = _gauge(m.SIGNAL_QUEUE_MESSAGES, "Ready messages on the signal queue (passive declare).")
        family.add_metric([], queue_ready_messages())
        yield family


def queue_ready_messages() -> int:
    """Ready messages on ``SIGNAL_QUEUE``, read with a passive declare (which never creates the queue)."""
    from kombu import Connection

    timeouts = {"read_timeout": QUEUE_PROBE_TIMEOUT, "write_timeout": QUEUE_PROBE_TIMEOUT}
    with Connection(settings.SIGNAL_BROKER_URL, connect_timeout=QUEUE_PROBE_TIMEOUT,
                    transport_options=timeouts) as connection:  # fmt: skip
        connection.connect()
        channel = connection.channel()
        try:
            return channel.queue_declare(queue=settings.SIGNAL_QUEUE, passive=True).message_count
        finally:
            channel.close()


_registry: CollectorRegistry | None = None


def _scrape_registry() -> CollectorRegistry:
    global _registry
    if _registry is None:
        registry = CollectorRegistry()
        if os.environ.get(ENV_VAR):
            MultiProcessCollector(registry)
        else:  # not configured (a script without the settings): this process's own values only
            registry.register(_ProcessValues())
        registry.register(StateCollector())
        _registry = registry
    return _registry


class _ProcessValues:
    def collect(self):
        yield from REGISTRY.collect()


def metrics_render() -> bytes:
    """The Prometheus text exposition of every process plus the state series."""
    dead_processes_forget()
    return generate_latest(_scrape_registry())
