"""Alert thresholds, evaluated from the database: backlog, signal age, fill lag, exchange errors, heartbeats.

``alerts_evaluate`` measures every threshold (a handful of bounded queries on indexes), and for each alert
whose state changed flips its ``AlertState`` row under the row lock and publishes one ``ops.alert`` event in
the same transaction (outbox): once when it starts firing, once when it resolves, however many processes
evaluate. The measurements it returns are what health (``/health/ready``, ``/api/health/``) and the dashboard
banner show. Who evaluates, and why from the database rather than Prometheus: docs/decisions/0524.

Definitions (thresholds in settings, ``ALERT_*``):
- inbox backlog: signals ``received`` or ``processing``;
- signal age: now − ``received_at`` of the oldest of those;
- fill lag: the larger of (a) the slowest of the last ``FILL_LAG_SAMPLE`` stream fills applied within
  ``ALERT_FILL_LAG_WINDOW_SECONDS``: applied (``created_at``) − ``execTime``; and (b) now − ``submitted_at`` of
  the oldest market order the exchange acknowledged that has no fill yet (a market order fills at once, so
  its fill is late). Backfilled fills (source ``rest``) are reconciliation's repairs, not the stream's lag;
- exchange error rate: failed / all audited calls (``ExchangeCall``, dry runs excluded) created within the
  window that ended ``AUDIT_SETTLE`` ago; judged from ``ALERT_EXCHANGE_ERROR_MIN_CALLS`` calls on;
- heartbeat age: now − ``beat_at`` of each ``Heartbeat`` row (one alert per component).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from exchange.models import EXCHANGE_CALL_FAILED, ExchangeCall
from ordermanager.core.models import AlertState, Heartbeat
from ordermanager.events import OPS_ALERT, publish_event_on_commit
from orders.models import Execution, Order, OrderStatus, OrderType
from signals_app.models import SignalStatus, TradingSignal

log = structlog.get_logger(__name__)

FIRING, RESOLVED = "firing", "resolved"

INBOX_BACKLOG = "inbox_backlog"
SIGNAL_AGE = "signal_age"
FILL_LAG = "fill_lag"
EXCHANGE_ERROR_RATE = "exchange_error_rate"
HEARTBEAT_AGE = "heartbeat_age"
TITLES = {
    INBOX_BACKLOG: "Signal inbox backlog",
    SIGNAL_AGE: "Oldest unfinished signal",
    FILL_LAG: "Fill lag",
    EXCHANGE_ERROR_RATE: "Exchange error rate",
    HEARTBEAT_AGE: "Process heartbeat",
}

FILL_LAG_SAMPLE = 200  # the newest stream fills looked at (primary-key order: no index on created_at needed)
# The exchange-call audit row may be written a moment after the call (batched hand-off): the rate is taken
# over a window that ended this long ago, so calls made but not yet written do not skew it.
AUDIT_SETTLE = timedelta(seconds=10)
SCHEDULE_NAME = "ops: evaluate alerts"
SCHEDULE_FUNC = "ordermanager.ops.alerts.job_alerts_evaluate"


@dataclass(frozen=True)
class AlertCheck:
    """One threshold measured now: ``firing`` when ``value`` is beyond ``threshold``; ``reason`` says why."""

    alert: str
    subject: str
    value: Decimal | None
    threshold: Decimal
    firing: bool
    reason: str
    since: datetime | None = None  # when it started firing (from the state row), for the banner

    @property
    def key(self) -> str:
        return f"{self.alert}:{self.subject}" if self.subject else self.alert

    @property
    def title(self) -> str:
        return TITLES.get(self.alert, self.alert) + (f" ({self.subject})" if self.subject else "")


def _seconds(delta: timedelta) -> Decimal:
    return max(Decimal(0), Decimal(str(round(delta.total_seconds(), 1))))


def _limit(value) -> Decimal:
    number = Decimal(str(value))  # 60.0 → 60, 0.20 → 0.2 (never 6E+1 in a reason)
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


# --- measurements --------------------------------------------------------------------------------------------

def _inbox_checks(now: datetime) -> list[AlertCheck]:
    unfinished = TradingSignal.objects.filter(status__in=(SignalStatus.RECEIVED, SignalStatus.PROCESSING))
    # One aggregate on the (status, received_at) index gives both figures.
    row = unfinished.aggregate(n=Count("id"), oldest=Min("received_at"))
    backlog, limit = row["n"], settings.ALERT_INBOX_BACKLOG
    if backlog > limit:
        top = unfinished.values("asset").annotate(n=Count("id")).order_by("-n", "asset")[:3]
        largest = ", ".join(f"{r['asset'] or '?'} {r['n']}" for r in top)
        reason = f"{backlog} unfinished signals in the inbox (threshold {limit}); largest: {largest}"
    else:
        reason = f"{backlog} unfinished signals in the inbox (threshold {limit})"
    checks = [AlertCheck(INBOX_BACKLOG, "", Decimal(backlog), Decimal(limit), backlog > limit, reason)]

    age_limit = _limit(settings.ALERT_SIGNAL_AGE_SECONDS)
    age = _seconds(now - row["oldest"]) if row["oldest"] else None
    if age is not None and age > age_limit:
        oldest = unfinished.order_by("received_at").only("signal_id", "asset", "status").first()
        what = f": {oldest.asset or '?'} signal {oldest.signal_id} ({oldest.status})" if oldest else ""
        reason = f"the oldest unfinished signal is {age} s old (threshold {age_limit} s){what}"
    else:
        reason = f"oldest unfinished signal {age if age is not None else 0} s old (threshold {age_limit} s)"
    checks.append(AlertCheck(SIGNAL_AGE, "", age, age_limit, age is not None and age > age_limit, reason))
    return checks


def _fill_lag_check(now: datetime) -> list[AlertCheck]:
    limit = _limit(settings.ALERT_FILL_LAG_SECONDS)
    window_start = now - timedelta(seconds=settings.ALERT_FILL_LAG_WINDOW_SECONDS)
    recent = Execution.objects.filter(source="ws").order_by("-id").values_list("created_at", "exec_time", "symbol")
    applied = [(created - executed, symbol) for created, executed, symbol in recent[:FILL_LAG_SAMPLE]
               if created >= window_start]
    stream_lag, stream_symbol = max(applied, default=(timedelta(0), ""))
    # Acknowledged market orders without a fill, oldest first on the (status, created_at) index.
    waiting = (Order.objects.filter(status=OrderStatus.NEW, order_type=OrderType.MARKET, filled_qty=0,
                                    is_dry_run=False, submitted_at__isnull=False)
               .order_by("created_at").only("order_link_id", "symbol", "submitted_at").first())
    waiting_age = now - waiting.submitted_at if waiting else timedelta(0)

    value = _seconds(max(stream_lag, waiting_age))
    firing = value > limit
    if firing and waiting_age >= stream_lag:
        reason = (f"market order {waiting.order_link_id} ({waiting.symbol}) acknowledged {value} s ago still has "
                  f"no fill (fill lag threshold {limit} s)")
    elif firing:
        reason = f"a {stream_symbol} fill arrived {value} s after its execTime (fill lag threshold {limit} s)"
    else:
        reason = f"fill lag {value} s (threshold {limit} s)"
    return [AlertCheck(FILL_LAG, "", value, limit, firing, reason)]


def _exchange_error_check(now: datetime) -> list[AlertCheck]:
    limit, minimum = settings.ALERT_EXCHANGE_ERROR_RATE, settings.ALERT_EXCHANGE_ERROR_MIN_CALLS
    window = settings.ALERT_EXCHANGE_ERROR_WINDOW_SECONDS
    end = now - AUDIT_SETTLE
    calls = ExchangeCall.objects.filter(created_at__gt=end - timedelta(seconds=window), created_at__lte=end,
                                        dry_run=False)
    total = calls.count()  # the created_at index; failures on the partial index of failed calls
    failed = calls.filter(EXCHANGE_CALL_FAILED).count() if total else 0
    rate = (Decimal(failed) / Decimal(total)).quantize(Decimal("0.001")) if total else None
    firing = rate is not None and total >= minimum and rate > limit
    reason = f"{failed} of {total} exchange calls failed in the last {window} s (threshold {limit:.0%})"
    if firing:
        last = calls.filter(EXCHANGE_CALL_FAILED).order_by("-created_at").only("path", "error", "ret_code",
                                                                               "ret_msg", "http_status").first()
        reason += f"; last: {last.path} {_failure_text(last)}" if last else ""
    elif total < minimum:
        reason += f"; fewer than {minimum} calls: not judged"
    return [AlertCheck(EXCHANGE_ERROR_RATE, "", rate, _limit(limit), firing, reason[:500])]


def _failure_text(call) -> str:
    if call.error:
        return call.error
    if call.http_status is None:
        return "no answer"
    return f"retCode {call.ret_code} {call.ret_msg}".strip() if call.ret_code else f"HTTP {call.http_status}"


def _heartbeat_checks(now: datetime) -> list[AlertCheck]:
    limit = _limit(settings.ALERT_HEARTBEAT_AGE_SECONDS)
    checks = []
    for beat in Heartbeat.objects.order_by("component"):
        age = _seconds(now - beat.beat_at)
        if age > limit:
            reason = f"{beat.component} last beat {age} s ago (threshold {limit} s): {beat.detail}"
        else:
            reason = f"{beat.component} beat {age} s ago"
        checks.append(AlertCheck(HEARTBEAT_AGE, beat.component, age, limit, age > limit, reason[:500]))
    return checks


MEASURES: tuple[Callable[[datetime], list[AlertCheck]], ...] = (
    _inbox_checks, _fill_lag_check, _exchange_error_check, _heartbeat_checks,
)


def alerts_measure(*, now: datetime | None = None) -> list[AlertCheck]:
    """Every threshold measured now (reads only)."""
    now = now or timezone.now()
    return [check for measure in MEASURES for check in measure(now)]


# --- state and events --------------------------------------------------------------------------------------

def alerts_evaluate(*, now: datetime | None = None) -> list[AlertCheck]:
    """Measure every threshold, record the alerts that started or stopped firing (one ``ops.alert`` event
    each, whichever process gets there first) and return the checks, the firing ones with their ``since``."""
    now = now or timezone.now()
    checks = alerts_measure(now=now)
    states = {s.key: s for s in AlertState.objects.all()}
    for check in checks:
        state = states.get(check.key)
        if check.firing != (state is not None and state.firing):
            states[check.key] = _flip(check, now=now) or state
    measured = {c.key for c in checks}
    for key, state in list(states.items()):
        if state and state.firing and key not in measured:  # its subject is gone (a heartbeat row deleted)
            alert, _, subject = key.partition(":")
            _flip(AlertCheck(alert, subject, None, Decimal(0), False, "no longer measured (its record was removed)"),
                  now=now)
    return [_with_since(c, states.get(c.key)) for c in checks]


def _with_since(check: AlertCheck, state: AlertState | None) -> AlertCheck:
    if not check.firing:
        return check
    since = state.since if state is not None and state.firing else None
    return AlertCheck(check.alert, check.subject, check.value, check.threshold, True, check.reason, since)


def _flip(check: AlertCheck, *, now: datetime) -> AlertState | None:
    """Set the alert's row to ``check.firing`` and publish the event, unless another process already did.

    Race: several processes evaluate at once. The row is created if missing (a unique key, so no duplicate),
    then locked; under the lock its state is read again, so only the first flips it and publishes. An
    evaluation that started before the row's last flip (``changed_at``) leaves it alone: it measured earlier.
    """
    with transaction.atomic():
        AlertState.objects.bulk_create(
            [AlertState(key=check.key, firing=False, changed_at=now - timedelta(days=3650))], ignore_conflicts=True
        )
        state = AlertState.objects.select_for_update().get(key=check.key)
        if state.firing == check.firing or state.changed_at >= now:
            return state
        state.firing, state.changed_at, state.reason = check.firing, now, check.reason[:500]
        if check.firing:
            state.since = now
        state.save(update_fields=["firing", "changed_at", "reason", "since"])
        publish_event_on_commit(routing_key=OPS_ALERT, payload=_event_payload(check, state, now=now))
    log.warning("alert_" + (FIRING if check.firing else RESOLVED), alert=check.key, reason=check.reason)
    return state


def _event_payload(check: AlertCheck, state: AlertState, *, now: datetime) -> dict:
    return {
        "alert": check.alert,
        "alert_key": check.key,
        "subject": check.subject,
        "title": check.title,
        "state": FIRING if check.firing else RESOLVED,
        "reason": check.reason[:500],
        "value": check.value,
        "threshold": check.threshold,
        "since": state.since,
        "evaluated_at": now,
    }


def firing_reasons(checks: list[AlertCheck]) -> list[str]:
    return [f"{c.title}: {c.reason}" for c in checks if c.firing]


# --- schedule ------------------------------------------------------------------------------------------------

def job_alerts_evaluate() -> int:
    """django-q2 job: evaluate every threshold; returns how many alerts fire."""
    return sum(1 for check in alerts_evaluate() if check.firing)


def alerts_schedule_ensure() -> str:
    """Create or update the django-q2 schedule of ``job_alerts_evaluate`` (``manage.py setup_schedules``)."""
    from django_q.models import Schedule

    wanted = {"func": SCHEDULE_FUNC, "schedule_type": Schedule.MINUTES, "repeats": -1,
              "minutes": max(1, math.ceil(settings.ALERT_EVALUATION_INTERVAL / 60))}
    row = Schedule.objects.filter(name=SCHEDULE_NAME).first()
    if row is None:
        Schedule.objects.create(name=SCHEDULE_NAME, next_run=timezone.now(), **wanted)
        return f"created (every {wanted['minutes']} min)"
    if any(getattr(row, k) != v for k, v in wanted.items()):
        Schedule.objects.filter(pk=row.pk).update(**wanted)
        return f"updated (every {wanted['minutes']} min)"
    return f"unchanged (every {wanted['minutes']} min)"
