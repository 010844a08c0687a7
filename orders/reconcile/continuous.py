"""Continuous reconciliation: cheap passes that keep the book equal to the exchange between full runs.

Two kinds of pass (docs/decisions/0606-continuous-reconciliation.md):

- **light** (every ``RECONCILE_LIGHT_INTERVAL`` s): one open-orders listing, one
  positions listing and the executions since the last light pass (all symbols,
  paged) are compared with the database. Nothing is written from the comparison.
- **in-flight** (every ``RECONCILE_INFLIGHT_CHECK_INTERVAL`` s, and only when
  there is something to check): orders ``pending_submit`` / ``pending_cancel`` /
  ``new`` with no event for ``RECONCILE_INFLIGHT_SECONDS`` are looked up by
  orderLinkId, and symbols marked for backfill (``backfill_marks``) are taken.

Each symbol found to differ (or marked, or with a quiet order the exchange sees
otherwise) gets a symbol-scoped run of the ordinary ``reconcile`` (trigger
``light``), which settles it through the normal paths under the reconciliation
lock; at most ``RECONCILE_TARGETED_MAX_SYMBOLS`` per pass. A pass never sends an
order itself. Passes that find nothing are rolled up into one ``light`` run row
(``passes``, ``last_pass_at``) instead of one row each; so are passes that fail
the same way (an unreachable exchange).

``continuous_tick`` is what a worker thread (``ContinuousReconciler``) calls every
few seconds in every long-lived process; a ``ReconcileLease`` row per kind lets
exactly one process take each due pass.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F, Q
from django.utils import timezone

from exchange.bybit.client import get_client
from exchange.bybit.errors import BybitError
from exchange.bybit.types import MalformedPayload
from ordermanager.core.epoch import epoch_ms
from orders.models import (
    ACTIVE_STATUSES,
    STATUS_RANK,
    BackfillMark,
    Order,
    OrderStatus,
    ReconcileLease,
    ReconciliationRun,
)
from orders.reconcile import reconcile
from orders.reconcile.backfill_marks import marks_clear, marks_due
from orders.reconcile.exchange import open_orders_fetch, status_of
from orders.reconcile.executions import WINDOW_OVERLAP, exec_window_start, executions_known, now_ms
from orders.reconcile.lock import ReconciliationInProgress, reconcile_is_running
from orders.reconcile.run import active_categories
from positions.selectors import position_open_rows

log = structlog.get_logger(__name__)

LIGHT = "light"
INFLIGHT = "inflight"
# Individual lookups per pass (each one or two REST calls); the light listing covers the rest.
MAX_LOOKUPS = 10
# A quiet order the exchange confirmed is not looked up again before this (doubling up to the cap).
RECHECK_START = timedelta(seconds=30)
RECHECK_CAP = timedelta(minutes=10)

Key = tuple[str, str]  # (category, symbol)


@dataclass
class PassResult:
    kind: str
    suspects: dict[Key, str] = field(default_factory=dict)  # why each symbol was looked at
    runs: list[ReconciliationRun] = field(default_factory=list)  # targeted runs kept (they found something)
    rollup: ReconciliationRun | None = None
    lookups: int = 0
    skipped: str = ""


# ------------------------------------------------------------------ scheduling


def lease_claim(name: str, seconds: float, *, first_in: float | None = None) -> bool:
    """True if this process takes the pass ``name`` now (its due time moved ``seconds`` ahead).
    A new lease is first due ``first_in`` seconds from now (default: one interval)."""
    now = timezone.now()
    ReconcileLease.objects.get_or_create(
        name=name, defaults={"due_at": now + timedelta(seconds=seconds if first_in is None else first_in)}
    )
    claimed = ReconcileLease.objects.filter(name=name, due_at__lte=now).update(due_at=now + timedelta(seconds=seconds))
    return claimed == 1


def continuous_tick() -> PassResult | None:
    """Run whichever pass is due (light first); None when nothing was due or there was nothing to check."""
    light = settings.RECONCILE_LIGHT_INTERVAL
    if light and lease_claim(LIGHT, light):
        return light_pass()
    every = settings.RECONCILE_INFLIGHT_CHECK_INTERVAL
    if every and _inflight_work_exists() and lease_claim(INFLIGHT, every, first_in=0):
        return inflight_pass()
    return None


# ------------------------------------------------------------------ passes


def light_pass() -> PassResult:
    """Compare listings with the book, then settle what differs (plus marks and quiet orders)."""
    return _pass(LIGHT, compare=True)


def inflight_pass() -> PassResult:
    """Marked symbols and quiet in-flight orders only (no listings)."""
    return _pass(INFLIGHT, compare=False)


def _pass(kind: str, *, compare: bool) -> PassResult:
    result = PassResult(kind=kind)
    if reconcile_is_running():
        result.skipped = "another reconciliation run is in progress (it is doing the job)"
        log.info("reconcile_pass_skipped", kind=kind, reason=result.skipped)
        return result
    t0 = timezone.now()
    client = get_client()
    error = ""
    checked = 0
    try:
        result.suspects.update(marks_due())
        if compare:
            for category in active_categories(with_positions=False):
                checked += _compare(client, category, t0, result.suspects)
        result.lookups = _lookup_quiet(client, t0, result.suspects)
    except (BybitError, MalformedPayload) as exc:
        error = f"exchange unavailable or answered badly: {exc}"
        log.warning("reconcile_pass_failed", kind=kind, error=error)
    settled = not error and _targeted(result, t0)
    if compare and settled:
        # Every execution up to t0 is booked now: the next light pass pulls from here (less an overlap).
        ReconcileLease.objects.filter(name=LIGHT).update(covered_to=t0)
    if not result.runs:
        result.rollup = _rollup(t0=t0, checked=checked + result.lookups, error=error)
    log.info("reconcile_pass", kind=kind, suspects={f"{c}:{s}": why for (c, s), why in result.suspects.items()},
             runs=[r.pk for r in result.runs], lookups=result.lookups, error=error or None)  # fmt: skip
    return result


def _compare(client, category: str, t0, suspects: dict[Key, str]) -> int:
    """Open orders, positions and recent executions against the book; returns the number of items looked at.
    A difference is kept only if a second read of the book, after the settle pause, still shows it
    (an event that was on its way when the listing was taken is not a difference)."""
    listing = open_orders_fetch(client, category=category, symbol=None)
    positions = client.get_positions(category=category, settle_coin="USDT") if category != "spot" else None
    start = exec_window_start(category=category, symbol=None, now=t0)
    covered = ReconcileLease.objects.filter(name=LIGHT).values_list("covered_to", flat=True).first()
    if covered is not None:
        start = max(start, epoch_ms(covered - WINDOW_OVERLAP))
    executions = client.get_executions(category=category, start_ms=start, end_ms=now_ms())

    def found() -> dict[Key, str]:
        out: dict[Key, str] = {}
        _orders_differ(listing, category, t0, out)
        if positions is not None:
            _positions_differ(positions, category, out)
        missing = {e.exec_id for e in executions} - executions_known(e.exec_id for e in executions)
        for info in executions:
            if info.exec_id in missing:
                out.setdefault((category, info.symbol), f"execution {info.exec_id} not booked")
        return out

    first = found()
    if first and settings.RECONCILE_SETTLE_SECONDS:
        time.sleep(settings.RECONCILE_SETTLE_SECONDS)  # let events already on their way land, then look again
        again = found()
        first = {k: v for k, v in first.items() if k in again}
    for key, why in first.items():
        suspects.setdefault(key, why)
    return len(listing.items) + len(executions) + len(positions or [])


def _orders_differ(listing, category: str, t0, out: dict[Key, str]) -> None:
    quiet_before = t0 - timedelta(seconds=settings.RECONCILE_INFLIGHT_SECONDS)
    ours = list(Order.objects.filter(category=category, status__in=ACTIVE_STATUSES, created_at__lt=t0))
    seen: set[str] = set()
    for order in ours:
        info = listing.match(order_link_id=order.order_link_id, order_id=order.order_id)
        if info is None:
            if order.status != OrderStatus.PENDING_SUBMIT or order.updated_at < quiet_before:
                out.setdefault((category, order.symbol), f"order {order.order_link_id} is {order.status} here, "
                                                         "not open on the exchange")  # fmt: skip
            continue
        seen.add(info.order_id)
        theirs = status_of(info)
        behind = STATUS_RANK.get(theirs, 0) > STATUS_RANK[order.status] or info.cum_exec_qty > order.filled_qty
        in_flight = order.status in (OrderStatus.PENDING_SUBMIT, OrderStatus.PENDING_CANCEL)
        if behind or (in_flight and order.updated_at < quiet_before):
            out.setdefault((category, order.symbol), f"order {order.order_link_id}: {order.status} "
                                                     f"{order.filled_qty} here, {info.order_status} "
                                                     f"{info.cum_exec_qty} on the exchange")  # fmt: skip
    unknown = [i for i in listing.items if i.order_id not in seen]
    if unknown:
        known = set(Order.objects.filter(order_id__in=[i.order_id for i in unknown]).values_list("order_id", flat=True))
        known |= set(Order.objects.filter(order_link_id__in=[i.order_link_id for i in unknown if i.order_link_id])
                     .values_list("order_id", flat=True))  # fmt: skip
        for info in unknown:
            if info.order_id not in known:
                out.setdefault((category, info.symbol), f"open order {info.order_id} unknown here")


def _positions_differ(infos, category: str, out: dict[Key, str]) -> None:
    theirs = {(i.symbol, i.position_idx): i.signed_size for i in infos}
    ours = {(p.symbol, p.position_idx): p.signed_size
            for p in position_open_rows(category=category)}  # fmt: skip
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key, 0) != ours.get(key, 0):
            out.setdefault((category, key[0]), f"position {key[0]}[{key[1]}]: {ours.get(key, 0)} here, "
                                               f"{theirs.get(key, 0)} on the exchange")  # fmt: skip


# Quiet orders confirmed by a lookup: order pk -> (status then, next check after, delay).
_confirmed: dict[int, tuple[str, object, timedelta]] = {}
_confirmed_lock = threading.Lock()


def _quiet_orders(t0) -> list[Order]:
    """Orders in flight with no event for RECONCILE_INFLIGHT_SECONDS. A resting ``new`` order is quiet by
    nature: it is looked up when it turns quiet, then left to the light pass's listing (which sees every
    open order in one request) instead of being asked about one by one for as long as it rests."""
    before = t0 - timedelta(seconds=settings.RECONCILE_INFLIGHT_SECONDS)
    quiet = Q(status__in=(OrderStatus.PENDING_SUBMIT, OrderStatus.PENDING_CANCEL), updated_at__lt=before)
    new = Q(status=OrderStatus.NEW, updated_at__lt=before)
    if settings.RECONCILE_LIGHT_INTERVAL:
        new &= Q(updated_at__gte=before - timedelta(seconds=max(2 * settings.RECONCILE_LIGHT_INTERVAL, 60)))
    return list(Order.objects.filter(quiet | new, is_dry_run=False).order_by("updated_at")[:200])


def _inflight_work_exists() -> bool:
    if BackfillMark.objects.exists():
        return True
    now = timezone.now()
    with _confirmed_lock:
        return any(not _recently_confirmed(o, now) for o in _quiet_orders(now))


def _recently_confirmed(order: Order, now) -> bool:
    seen = _confirmed.get(order.pk)
    return seen is not None and seen[0] == order.status and now < seen[1]


def _lookup_quiet(client, t0, suspects: dict[Key, str]) -> int:
    """Look up quiet in-flight orders by orderLinkId (symbols already suspect need no lookup)."""
    lookups = 0
    with _confirmed_lock:
        if len(_confirmed) > 5000:  # forget orders whose next look is due anyway (keeps the memo small)
            for pk in [pk for pk, seen in _confirmed.items() if seen[1] <= t0]:
                del _confirmed[pk]
    for order in _quiet_orders(t0):
        key = (order.category, order.symbol)
        with _confirmed_lock:
            if key in suspects or _recently_confirmed(order, t0):
                continue
        if lookups >= MAX_LOOKUPS:
            break
        lookups += 1
        info = client.get_order(category=order.category, symbol=order.symbol, order_link_id=order.order_link_id)
        quiet_for = int((t0 - order.updated_at).total_seconds())
        if info is None:
            suspects[key] = f"order {order.order_link_id} {order.status} with no event for {quiet_for} s: " \
                            "the exchange does not know it"
        elif status_of(info) != order.status or info.cum_exec_qty != order.filled_qty:
            suspects[key] = f"order {order.order_link_id} {order.status} with no event for {quiet_for} s: " \
                            f"{info.order_status} {info.cum_exec_qty} on the exchange"
        # Not asked again about soon while its status stays the same, whatever the answer: an order the
        # targeted run leaves as it is (e.g. held until its outcome is known) must not cost a run per pass.
        with _confirmed_lock:
            previous = _confirmed.get(order.pk)
            same = previous is not None and previous[0] == order.status
            delay = min(previous[2] * 2, RECHECK_CAP) if same else RECHECK_START
            _confirmed[order.pk] = (order.status, t0 + delay, delay)
    return lookups


# ------------------------------------------------------------------ settling and recording


def _targeted(result: PassResult, t0) -> bool:
    """A symbol-scoped run per suspect symbol (ordinary reconcile, under its lock), oldest mark first.
    True when every suspect was settled (none left for a later pass, no run failed)."""
    suspects = list(result.suspects)
    settled = len(suspects) <= settings.RECONCILE_TARGETED_MAX_SYMBOLS
    for category, symbol in suspects[: settings.RECONCILE_TARGETED_MAX_SYMBOLS]:
        try:
            run = reconcile(trigger=ReconciliationRun.Trigger.LIGHT, symbol=symbol, wait=5.0)
        except ReconciliationInProgress:
            log.info("reconcile_pass_yielded", symbol=symbol, reason="another run holds the lock")
            return False
        if run.status == ReconciliationRun.Status.FAILED:
            settled = False
        else:
            marks_clear(category=category, symbol=symbol, read_before=t0)
        if run.status == ReconciliationRun.Status.SUCCEEDED and not run.discrepancies.exists():
            # The suspicion was an event on its way: nothing to show for it but one more pass.
            run.delete()
            continue
        result.runs.append(run)
    return settled


def _rollup(*, t0, checked: int, error: str) -> ReconciliationRun:
    """Count an uneventful (or identically failing) pass on the latest light row when that row is the
    newest run of all and says the same; otherwise start a new light row."""
    status = ReconciliationRun.Status.FAILED if error else ReconciliationRun.Status.SUCCEEDED
    now = timezone.now()
    latest = ReconciliationRun.objects.order_by("-started_at", "-id").first()
    if (latest is not None and latest.trigger == ReconciliationRun.Trigger.LIGHT and not latest.symbol
            and latest.status == status and latest.error == error[:5000]):  # fmt: skip
        ReconciliationRun.objects.filter(pk=latest.pk).update(
            passes=F("passes") + 1, last_pass_at=t0, finished_at=now, checked=F("checked") + checked
        )
        latest.refresh_from_db()
        return latest
    return ReconciliationRun.objects.create(
        trigger=ReconciliationRun.Trigger.LIGHT, status=status, error=error[:5000], finished_at=now,
        last_pass_at=t0, passes=1, checked=checked,
    )  # fmt: skip


# ------------------------------------------------------------------ the thread


class ContinuousReconciler:
    """Daemon thread calling ``continuous_tick`` until ``stop``. Started by every long-lived worker
    (process_signals, consume_signals, start_ingest); the leases make one of them take each pass."""

    def __init__(self, *, tick: float | None = None):
        intervals = [s for s in (settings.RECONCILE_LIGHT_INTERVAL, settings.RECONCILE_INFLIGHT_CHECK_INTERVAL) if s]
        self.enabled = bool(intervals)
        self.tick = tick if tick is not None else min([5.0, *intervals])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.enabled:
            log.info("continuous_reconcile_off")
            return
        self._thread = threading.Thread(target=self._run, name="continuous-reconcile", daemon=True)
        self._thread.start()
        log.info("continuous_reconcile_started", light_every=settings.RECONCILE_LIGHT_INTERVAL,
                 inflight_every=settings.RECONCILE_INFLIGHT_CHECK_INTERVAL)  # fmt: skip

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                continuous_tick()
            except (OperationalError, InterfaceError) as exc:
                log.warning("continuous_reconcile_db_unavailable", error=str(exc))
                connection.close()
            except Exception:  # the thread must outlive one bad pass
                log.exception("continuous_reconcile_pass_crashed")
                connection.close_if_unusable_or_obsolete()
        connection.close()
