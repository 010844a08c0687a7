"""What the desk looks at all day: exposure, today's PnL, open orders, signals,
reconciliation and the health of every moving part.

Each figure is one bounded query on an index (see the comments); the whole
summary stays well under a second on a database with millions of orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import chain

from django.conf import settings
from django.utils import timezone

from exchange.models import ExchangeCall
from ordermanager.core.models import Heartbeat
from ordermanager.core.services.heartbeat import CONSUMER, WS_GATEWAY
from ordermanager.outbox import outbox_lag
from orders.models import ACTIVE_STATUSES, Order, ReconciliationRun, RiskLimit
from orders.selectors.pnl import pnl_report
from orders.services.order_holds import held_symbols, held_symbols_text
from positions.models import Position
from positions.selectors import pnl_series
from signals_app.models import SignalStatus, TradingSignal

OK, STALE, DOWN, UNKNOWN = "ok", "stale", "down", "unknown"
HEARTBEAT_STALE_AFTER = timedelta(seconds=90)
EXCHANGE_WINDOW = timedelta(minutes=10)


@dataclass
class ComponentHealth:
    name: str
    status: str
    last_seen: datetime | None = None
    detail: str = ""


@dataclass
class Exposure:
    symbol: str
    size: Decimal
    mark_price: Decimal | None
    notional: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal


@dataclass
class DashboardSummary:
    now: datetime
    trading_halted: bool
    halt_reason: str
    reduce_only_symbols: list[str]
    exposure: list[Exposure]
    total_exposure: Decimal
    realized_today: Decimal
    fees_today: Decimal
    funding_today: Decimal
    net_today: Decimal
    unrealized_now: Decimal
    open_orders: dict[str, int]
    latest_open_orders: list[Order]
    signals_last_hour: dict[str, int]
    last_reconciliation: ReconciliationRun | None
    health: list[ComponentHealth] = field(default_factory=list)


def exposure_by_symbol() -> list[Exposure]:
    rows = []
    for position in Position.objects.exclude(size=0).order_by("symbol"):
        notional = abs(position.size) * (position.mark_price or position.avg_entry_price)
        rows.append(Exposure(position.symbol, position.size, position.mark_price, notional,
                             position.unrealized_pnl, position.realized_pnl))
    return rows


def open_order_counts() -> dict[str, int]:
    # One COUNT per active status on the (status, created_at) index: open orders are few even when
    # the table holds millions of closed ones.
    return {status: Order.objects.filter(status=status).count() for status in ACTIVE_STATUSES}


def latest_open_orders(*, limit: int) -> list[Order]:
    # Top N per status on the (status, created_at) index, merged here: an IN (...) ORDER BY created_at
    # would walk the whole created_at index past millions of closed orders.
    per_status = [Order.objects.filter(status=s).order_by("-created_at")[:limit] for s in ACTIVE_STATUSES]
    return sorted(chain.from_iterable(per_status), key=lambda o: o.created_at, reverse=True)[:limit]


def signal_counts_since(*, since: datetime) -> dict[str, int]:
    # Per status on the (status, received_at) index rather than one GROUP BY that scans every signal.
    counts = {s: TradingSignal.objects.filter(status=s, received_at__gte=since).count() for s in SignalStatus.values}
    return {status: n for status, n in counts.items() if n}


def _heartbeat_health(name: str, beats: dict[str, Heartbeat], now: datetime) -> ComponentHealth:
    beat = beats.get(name)
    if beat is None:
        return ComponentHealth(name, UNKNOWN, None, "no heartbeat recorded yet")
    if not beat.ok:
        return ComponentHealth(name, DOWN, beat.beat_at, beat.detail)
    status = OK if now - beat.beat_at <= HEARTBEAT_STALE_AFTER else STALE
    return ComponentHealth(name, status, beat.beat_at, beat.detail)


@dataclass(frozen=True)
class ExchangeLastCall:
    created_at: datetime
    path: str
    failed: bool  # no answer, a transport error or a 5xx: the exchange is not answering (a retCode is an answer)
    outcome: str


def exchange_last_call() -> ExchangeLastCall | None:
    """The last audited exchange call (dry runs never reach the exchange), newest first on the created_at index."""
    last = ExchangeCall.objects.filter(dry_run=False).order_by("-created_at").first()
    if last is None:
        return None
    failed = bool(last.error) or last.http_status is None or last.http_status >= 500
    if failed:
        outcome = last.error or last.ret_msg or (f"HTTP {last.http_status}" if last.http_status else "no answer")
    else:
        outcome = f"HTTP {last.http_status}, retCode {last.ret_code}"
    return ExchangeLastCall(last.created_at, last.path, failed, outcome[:300])


def _exchange_health(now: datetime) -> ComponentHealth:
    # The audit of every exchange request says how the exchange answered lately, without calling it.
    last = exchange_last_call()
    if last is None:
        return ComponentHealth("exchange", UNKNOWN, None, "no exchange call recorded yet")
    if last.failed:
        return ComponentHealth("exchange", DOWN, last.created_at, f"last call failed: {last.outcome}"[:500])
    recent = ExchangeCall.objects.filter(created_at__gte=now - EXCHANGE_WINDOW)
    status = OK if last.created_at >= now - EXCHANGE_WINDOW else STALE
    return ComponentHealth("exchange", status, last.created_at, f"{recent.count()} calls in the last 10 min")


def _outbox_health(now: datetime) -> ComponentHealth:
    """Events out: the age of the oldest unsent outbox event (the relay's lag)."""
    age, unsent = outbox_lag(now=now)
    if not settings.SIGNAL_BROKER_URL:
        return ComponentHealth("outbox", OK, now, f"no broker: {unsent} event(s) kept in the outbox (admin)")
    if age is None:
        return ComponentHealth("outbox", OK, now, "lag 0 s: every event sent")
    status = OK if age <= settings.OUTBOX_LAG_STALE_SECONDS else STALE
    return ComponentHealth("outbox", status, now, f"lag {age:.1f} s: {unsent} unsent event(s), oldest {age:.1f} s")


def _jobs_health(now: datetime) -> ComponentHealth:
    from django_q.models import Task

    last = Task.objects.order_by("-stopped").only("stopped", "success", "name", "func").first()
    if last is None:
        return ComponentHealth("jobs", UNKNOWN, None, f"no django-q2 task has run yet; {_next_job(now)}")
    window = timedelta(seconds=3 * settings.POSITION_SNAPSHOT_INTERVAL)
    if now - last.stopped <= window:
        return ComponentHealth("jobs", OK, last.stopped, f"last task {_task_label(last)}")
    return ComponentHealth("jobs", STALE, last.stopped, f"last task {_task_label(last)}; {_next_job(now)}")


def _task_label(task) -> str:
    # django-q2 names tasks with random words; the function says what ran.
    return (task.func or "").rsplit(".", 1)[-1] or task.name


def _next_job(now: datetime) -> str:
    """What the jobs component waits for: the next scheduled job, and who runs it."""
    from django_q.models import Schedule

    upcoming = Schedule.objects.exclude(next_run=None).order_by("next_run").only("name", "func", "next_run").first()
    if upcoming is None:
        return "waiting for schedules (manage.py start_ingest sets them up)"
    name = upcoming.name or upcoming.func
    if upcoming.next_run <= now:
        return f"waiting for qcluster to run {name} (due {upcoming.next_run:%H:%M:%S} UTC; is qcluster running?)"
    return f"waiting for {name} at {upcoming.next_run:%H:%M:%S} UTC (run by qcluster)"


def _holds_health(now: datetime) -> ComponentHealth:
    # Symbols waiting on a create whose outcome is unknown (docs/decisions/0315): their later signals wait.
    holds = held_symbols()
    if not holds:
        return ComponentHealth("order_holds", OK, now, "no symbol held")
    return ComponentHealth("order_holds", STALE, holds[0].since, held_symbols_text(holds, now=now)[:500])


def health_components(*, now: datetime | None = None) -> list[ComponentHealth]:
    now = now or timezone.now()
    beats = {b.component: b for b in Heartbeat.objects.all()}
    components = [ComponentHealth("database", OK, now, "")]
    components += [_heartbeat_health(name, beats, now) for name in (CONSUMER, WS_GATEWAY)]
    components += [_exchange_health(now), _jobs_health(now), _holds_health(now), _outbox_health(now)]
    components += [_heartbeat_health(name, beats, now) for name in sorted(beats) if name not in (CONSUMER, WS_GATEWAY)]
    return components


def dashboard_summary(*, now: datetime | None = None) -> DashboardSummary:
    now = now or timezone.now()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = pnl_report(start=midnight, end=now + timedelta(microseconds=1), group_by="symbol").total
    exposure = exposure_by_symbol()
    limits = {r.symbol: r for r in RiskLimit.objects.filter(symbol="")} | {
        r.symbol: r for r in RiskLimit.objects.exclude(symbol="").filter(reduce_only=True)
    }
    glob = limits.get("")
    return DashboardSummary(
        now=now,
        trading_halted=bool(glob and glob.trading_halted),
        halt_reason=glob.halt_reason if glob else "",
        reduce_only_symbols=sorted(s for s in limits if s),
        exposure=exposure,
        total_exposure=sum((e.notional for e in exposure), Decimal(0)),
        realized_today=today.realized_pnl,
        fees_today=today.fees,
        funding_today=today.funding,
        net_today=today.net_pnl,
        unrealized_now=sum((e.unrealized_pnl for e in exposure), Decimal(0)),
        open_orders=open_order_counts(),
        latest_open_orders=latest_open_orders(limit=10),
        signals_last_hour=signal_counts_since(since=now - timedelta(hours=1)),
        last_reconciliation=ReconciliationRun.objects.select_related("started_by").order_by("-id").first(),
        health=health_components(now=now),
    )


def dashboard_pnl_series(*, now: datetime | None = None, hours: int = 24):
    now = now or timezone.now()
    return pnl_series(start=now - timedelta(hours=hours), end=now + timedelta(seconds=1))


__all__ = ["dashboard_summary", "dashboard_pnl_series", "health_components"]
