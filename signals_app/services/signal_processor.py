"""The per-symbol FIFO processor: drains the inbox into orders.

Ordering (design property 3): a worker takes a symbol with
``symbol_lock_try`` (advisory lock on PostgreSQL, so at most one worker in
all processes holds it) and processes that symbol's unfinished signals
strictly by inbox id. Different symbols run in parallel in the worker
threads of every process. See docs/decisions/0301-signal-pipeline.md.

Crash safety (properties 1 and 2): a signal is marked ``processing`` before
anything is sent; its orders are committed ``pending_submit`` with their
deterministic orderLinkId before the request. A signal found ``processing``
by a worker that holds its symbol lock is an orphan of a dead worker: if it
has orders, each pending one is looked up on the exchange by orderLinkId and
only sent if absent (``order_resume``); if it has none, nothing reached the
exchange but cancellations, and it is planned again.

Every signal ends terminal: ``executed`` (every leg acknowledged),
``dry_run``, ``rejected`` (a rule or the exchange said no, with the reason),
``failed`` (the exchange could not be reached, or a leg's outcome stayed
unknown until it was given up; the reason says which).

Holds (docs/decisions/0315): a leg whose outcome is unknown keeps its signal
``processing`` and its symbol: the worker stops there, and on later rounds
looks the order up by orderLinkId with backoff (``order_holds``) until the
outcome is known or the order is given up; only then do the symbol's later
signals run. Fresh positions (docs/decisions/0316): a refusal that says the
position was not what we decided on re-reads the exchange and re-plans once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import structlog
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.models import Min
from django.utils import timezone

from ordermanager import events, metrics
from orders.models import Order, OrderHold, OrderStatus, SignalOrderRelationship
from orders.services import order_holds
from orders.services.cancellation import CancelOutcome, CancelResult, orders_cancel_for_signal
from orders.services.order_executor import order_link_id_for, order_resume, order_submit
from orders.services.risk_limits import risk_limit_seed_global
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services import fresh_position
from signals_app.services.intake import INBOX_CHANNEL, signal_event_payload
from signals_app.services.order_plan import NO_POSITION, OrderPlan, order_plan
from signals_app.services.symbol_lock import symbol_lock_release, symbol_lock_try

log = structlog.get_logger(__name__)

UNFINISHED = (SignalStatus.RECEIVED, SignalStatus.PROCESSING)
ACKNOWLEDGED = (
    OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.PENDING_CANCEL,
    OrderStatus.CANCELLED,
)
# A worker gives its symbol back after this many signals so a busy symbol cannot starve the others.
BATCH_PER_SYMBOL = 50
# Health: one signal in hand longer than this (cancels and a create, each with the client's retries, take far
# less) or a worker error this recent makes the processor unhealthy in the heartbeat.
STUCK_AFTER_SECONDS = 120.0
REDUCE_ONLY_REFUSED = 110017
ERROR_RECENT_SECONDS = 60.0



class _Wakeups:
    """This process's wake-ups of the processor workers (docs/decisions/0324).

    ``offer(symbols)`` hands each symbol to one idle worker, which takes it at once without reading the inbox
    for symbols with work; ``set()`` (a wake without symbols: a NOTIFY from another process, a stop) asks one
    worker to look for work. ``is_set``/``clear``/``wait`` read as ``threading.Event``'s. Inside ``deferred()``
    this thread's wake-ups are held back and handed over when it ends, as one offer of the symbols (the
    consumer knows which symbols it stored, so the workers need not search for them).
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._symbols: dict[str, None] = {}  # an ordered set: the first offered is taken first
        self._scan = False
        self._missed: set[str] = set()
        self._local = threading.local()
        # Backend pids of this process's intakes: their NOTIFYs are wake-ups this process already had.
        self.local_backends: set[int] = set()

    def set(self) -> None:
        if getattr(self._local, "held", None) is not None:
            return  # the deferred() block ends with an offer of what it stored
        with self._cond:
            self._scan = True
            self._cond.notify()

    def offer(self, symbols) -> None:
        with self._cond:
            added = 0
            for symbol in symbols:
                if symbol not in self._symbols:
                    self._symbols[symbol] = None
                    added += 1
            self._cond.notify(added)

    def wake_all(self) -> None:
        with self._cond:
            self._scan = True
            self._cond.notify_all()

    def is_set(self) -> bool:
        return self._scan or bool(self._symbols)

    def clear(self) -> None:
        with self._cond:
            self._scan = False
            self._symbols.clear()

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(self.is_set, timeout)

    def take(self, timeout: float) -> str | bool:
        """The next offered symbol; True: look for work (a wake without symbols, or ``timeout`` passed with
        nothing offered: the poll that catches what no wake-up announced)."""
        with self._cond:
            if not self.is_set() and timeout > 0:
                self._cond.wait(timeout)
            if self._symbols:
                symbol = next(iter(self._symbols))
                del self._symbols[symbol]
                return symbol
            self._scan = False
            return True

    def missed(self, symbol: str) -> None:
        """A worker found ``symbol`` taken: the holder looks at it once more after letting it go."""
        with self._cond:
            self._missed.add(symbol)

    def take_missed(self, symbol: str) -> bool:
        with self._cond:
            if symbol in self._missed:
                self._missed.discard(symbol)
                return True
            return False

    @contextmanager
    def deferred(self):
        """Hold back this thread's wake-ups; the caller offers the symbols it stored (``offer``) after it."""
        self._local.held = True
        try:
            yield
        finally:
            self._local.held = None


_wake = _Wakeups()


def processor_wake(symbols=None) -> None:
    """Tell this process's workers that the inbox has new work (called after an intake commits): the
    ``symbols`` that have it go straight to idle workers; without them, a worker looks for work."""
    if symbols:
        _wake.offer(symbols)
    else:
        _wake.set()


def processor_wakes_deferred():
    """``with processor_wakes_deferred(): <intake transaction>`` then ``processor_wake(symbols)``: the workers
    are handed the stored symbols instead of each searching the inbox on the intake's wake-up."""
    return _wake.deferred()


def processor_local_backend(pid: int) -> None:
    """``pid`` (a PostgreSQL backend) stores intakes in this process: its NOTIFYs wake nobody here twice."""
    _wake.local_backends.add(pid)


# --- selectors -----------------------------------------------------------------------------------------------


def symbols_with_work(*, symbol: str | None = None) -> list[str]:
    """Symbols with unfinished signals, the one waiting longest first; a held symbol only when its next
    lookup is due (so workers do not spin on it)."""
    waiting = OrderHold.objects.filter(state=OrderHold.State.HELD, next_check_at__gt=timezone.now())
    qs = TradingSignal.objects.filter(status__in=UNFINISHED).exclude(asset__in=waiting.values("symbol"))
    if symbol:
        qs = qs.filter(asset=symbol)
    return list(qs.values("asset").annotate(first=Min("id")).order_by("first").values_list("asset", flat=True))


def _next_signals(symbol: str, limit: int) -> list[TradingSignal]:
    """The symbol's next unfinished signals in arrival order, read at once: the caller holds the symbol, so
    nobody else changes them, and later arrivals are picked up by the next read."""
    return list(TradingSignal.objects.filter(asset=symbol, status__in=UNFINISHED).order_by("id")[:limit])


# --- processing ----------------------------------------------------------------------------------------------


def process_pending(*, symbol: str | None = None, limit: int | None = None) -> int:
    """Process unfinished signals (of ``symbol``, or all) now, in this thread; returns how many.

    Symbols another worker holds are skipped (they are being processed)."""
    done = 0
    for name in symbols_with_work(symbol=symbol):
        if limit is not None and done >= limit:
            break
        done += _drain_symbol(name, None if limit is None else limit - done)
    return done


def _drain_symbol(symbol: str, limit: int | None) -> int:
    if not symbol_lock_try(symbol):
        return 0
    done = 0
    try:
        while limit is None or done < limit:
            batch = _next_signals(symbol, BATCH_PER_SYMBOL if limit is None else min(BATCH_PER_SYMBOL, limit - done))
            if not batch:
                break
            held = False
            for signal in batch:
                held = signal_process(signal=signal).status in UNFINISHED
                done += 1
                if held:
                    break  # the symbol waits on an unknown outcome (docs/decisions/0315)
            if held:
                break
    finally:
        symbol_lock_release(symbol)
    return done


def signal_process(*, signal: TradingSignal) -> TradingSignal:
    """Take one signal to a terminal state. The caller must hold the symbol lock."""
    with structlog.contextvars.bound_contextvars(signal_id=str(signal.signal_id), trace_id=signal.trace_id):
        # `processing` is set in the transaction that commits the orders (one commit fewer per signal); a
        # signal with orders but no terminal status is resumed whatever its status says.
        if signal.status not in UNFINISHED:
            return signal
        metrics.signal_work_started()
        try:
            # Orders are committed with the `processing` status, so a `received` signal has none to resume.
            orders = [] if signal.status == SignalStatus.RECEIVED else list(
                Order.objects.filter(signal_links__signal=signal).order_by("leg"))
            if orders:
                return _resume(signal, orders)
            return _plan_and_execute(signal)
        except DatabaseError:
            raise  # the worker backs off; the signal stays `processing` and is resumed
        except Exception as exc:
            # A bug must not block the symbol forever nor kill the worker: fail this signal, loudly.
            log.exception("signal_process_crashed")
            return _finish(signal, SignalStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")


def _plan_and_execute(signal: TradingSignal) -> TradingSignal:
    from exchange.bybit.errors import BybitError
    from exchange.instruments import UnknownInstrument

    _warn_clock_skew(signal)
    replanned = False
    try:
        try:
            plan = order_plan(signal=signal)
        except ValidationError as exc:
            if not _no_position_on_book(exc):
                raise
            # "No long position" decided on our book: ask the exchange once (docs/decisions/0316).
            sizes = fresh_position.exchange_sizes_read(category=settings.BYBIT_CATEGORY, symbol=signal.asset,
                                                       since=exc.plan_started)  # fmt: skip
            fresh_position.position_path_count(fresh_position.REPLANNED, symbol=signal.asset, after="no position",
                                               exchange={k: str(v) for k, v in sizes.items()})  # fmt: skip
            replanned = True
            plan = order_plan(signal=signal, position_sizes=sizes)
    except ValidationError as exc:
        return _finish(signal, SignalStatus.REJECTED, "; ".join(exc.messages))
    except BybitError as exc:
        return _finish(signal, SignalStatus.FAILED, f"exchange unavailable while preparing the order: {exc}")
    except UnknownInstrument as exc:
        return _finish(signal, SignalStatus.REJECTED, f"asset {signal.asset} is not listed on the exchange: {exc}")
    except DatabaseError:
        raise
    except Exception as exc:
        log.exception("signal_plan_crashed")
        return _finish(signal, SignalStatus.FAILED, f"internal error while planning: {type(exc).__name__}: {exc}")
    log.info("signal_planned", plan=plan.summary(), why=plan.decision.why, position_source=plan.position_source)
    cancels = orders_cancel_for_signal(
        symbol=plan.symbol, side=plan.side, order_type=plan.decision.order_type, category=settings.BYBIT_CATEGORY,
        note=f"signal {signal.signal_id}",
    ) if plan.cancel_candidates else []
    notes = [*plan.notes, *_cancel_notes(cancels)]
    summary = "; ".join([plan.summary(), *notes])
    orders = _orders_create(signal, plan)
    done = _submit_legs(signal, orders, summary=summary, replan=not replanned)  # one re-plan per signal
    return done if done is not None else _replan_after_refusal(signal, orders, summary=summary)


def _cancel_notes(cancels: list[CancelOutcome]) -> list[str]:
    """The processor's one reading of cancel results: only a failed cancel is worth a note on the signal
    (the others are the plan going as decided)."""
    return [f"cancel of {c.order_link_id} failed: {c.message}" for c in cancels if c.result is CancelResult.ERROR]


def _submit_legs(signal: TradingSignal, orders: list[Order], *, summary: str, replan: bool) -> TradingSignal | None:
    """Send each leg; the last leg's outcome and the signal's commit together. None: re-plan (see _settle)."""
    submitted: list[Order] = []
    finished: list[TradingSignal | None] = []

    def finish(last: Order) -> None:
        # Runs in the transaction that records the last leg's outcome: one commit for the order and the signal.
        finished.append(_settle(signal, [*submitted, last], summary=summary, replan=replan))

    for index, order in enumerate(orders):
        last = index == len(orders) - 1
        submitted.append(order_submit(order=order, fresh=True, on_recorded=finish if last else None))
    return finished[0]


def _settle(signal: TradingSignal, orders: list[Order], *, summary: str, replan: bool) -> TradingSignal | None:
    """Finish the signal, or hold its symbol when a leg's outcome is unknown (the signal stays `processing`),
    or return None when every leg was refused as reduce-only against a position we did not have (re-plan)."""
    pending = [o for o in orders if o.status == OrderStatus.PENDING_SUBMIT]
    if pending:
        order_holds.holds_open(signal=signal, orders=pending, error="create outcome unknown after the client's "
                               "retries and lookup")  # fmt: skip
        log.warning("signal_held", orders=[o.order_link_id for o in pending])
        return signal
    if replan and _refused_for_position(orders):
        return None
    return _submit_and_finish(signal, orders, summary=summary)


def _refused_for_position(orders: list[Order]) -> bool:
    """No leg placed and the exchange refused one as reduce-only (110017): our position was stale."""
    return not any(o.status in ACKNOWLEDGED for o in orders) and any(
        o.status == OrderStatus.REJECTED and o.reject_code == REDUCE_ONLY_REFUSED for o in orders)


def _replan_after_refusal(signal: TradingSignal, refused: list[Order], *, summary: str) -> TradingSignal:
    """Read the exchange's position and plan the signal once more (docs/decisions/0316)."""
    from exchange.bybit.errors import BybitError

    problems = "; ".join(_order_problem(o) for o in refused)
    head = f"{summary}: {problems}; re-planned on the exchange's position"
    try:
        sizes = fresh_position.exchange_sizes_read(category=refused[0].category, symbol=refused[0].symbol)
        fresh_position.position_path_count(fresh_position.REPLANNED, symbol=signal.asset, after="110017",
                                           exchange={k: str(v) for k, v in sizes.items()})  # fmt: skip
        plan = order_plan(signal=signal, position_sizes=sizes)
    except ValidationError as exc:
        return _finish(signal, SignalStatus.REJECTED, f"{head}: {'; '.join(exc.messages)}")
    except BybitError as exc:
        return _finish(signal, SignalStatus.REJECTED, f"{head} failed, the exchange could not be asked: {exc}")
    first = max(o.leg for o in refused) + 1
    plan = dataclasses.replace(plan, legs=[dataclasses.replace(leg, leg=first + leg.leg) for leg in plan.legs])
    log.info("signal_replanned", plan=plan.summary(), refused=[o.order_link_id for o in refused])
    orders = _orders_create(signal, plan)
    summary = "; ".join([f"{head}: {plan.summary()}", *plan.notes])
    done = _submit_legs(signal, orders, summary=summary, replan=False)
    return done


def _resume(signal: TradingSignal, orders: list[Order]) -> TradingSignal:
    """A `processing` signal with orders: a hold to check, or a crash to resume. Each pending leg is looked up
    by orderLinkId (``order_resume``): found → acknowledged; absent → sent (young) or failed (old). A lookup
    that cannot tell keeps the hold (backoff); past ORDER_HOLD_MAX_SECONDS the leg is given up."""
    from exchange.bybit.errors import BybitError

    pending = [o for o in orders if o.status == OrderStatus.PENDING_SUBMIT]
    if pending and order_holds.hold_waiting(pending):
        return signal  # not due for its next lookup: the symbol keeps waiting
    held = {h.order_id: h for h in OrderHold.objects.filter(order__in=orders)}
    log.warning("signal_resumed", orders=[o.order_link_id for o in orders], held=bool(held))
    for order in pending:
        try:
            order_resume(order=order)
        except BybitError as exc:
            order_holds.hold_note_unknown(signal=signal, order=order, error=f"lookup failed: {exc}")
            continue
        if order.status == OrderStatus.PENDING_SUBMIT:  # sent again, and again no answer
            order_holds.hold_note_unknown(signal=signal, order=order, error="re-sent: outcome unknown again")
    still = [o for o in pending if o.status == OrderStatus.PENDING_SUBMIT]
    for order in still:
        hold = OrderHold.objects.get(order=order)
        if order_holds.hold_expired(hold):
            order_holds.hold_give_up(hold)
            order.refresh_from_db()
    if any(o.status == OrderStatus.PENDING_SUBMIT for o in still):
        return signal
    order_holds.holds_release(orders)
    for order in orders:
        order.refresh_from_db()
    if held:
        since = min(h.since for h in held.values())
        summary = f"held {(timezone.now() - since).total_seconds():.0f}s until the create's outcome was known"
    else:
        summary = "resumed after restart"
    return _submit_and_finish(signal, orders, summary=summary)


def _no_position_on_book(exc: ValidationError) -> bool:
    return getattr(exc, "code", None) == NO_POSITION and getattr(exc, "position_source", "") == "book"


def _orders_create(signal: TradingSignal, plan: OrderPlan) -> list[Order]:
    """Commit every leg as pending_submit (with its orderLinkId) before anything is sent."""
    with transaction.atomic():
        TradingSignal.objects.filter(pk=signal.pk, status=SignalStatus.RECEIVED).update(status=SignalStatus.PROCESSING)
        orders = []
        for leg in plan.legs:
            order = Order.objects.create(
                order_link_id=order_link_id_for(signal_id=signal.signal_id, leg=leg.leg),
                category=settings.BYBIT_CATEGORY,
                symbol=plan.symbol,
                side=plan.side,
                order_type=plan.decision.order_type,
                time_in_force=plan.decision.time_in_force,
                qty=leg.qty,
                price=plan.decision.price,
                post_only=plan.decision.post_only,
                reduce_only=leg.reduce_only,
                position_idx=leg.position_idx,
                leg=leg.leg,
                status=OrderStatus.PENDING_SUBMIT,
                is_dry_run=settings.ENABLE_DRY_RUN,
                strategy_id=signal.strategy_id,
                trace_id=signal.trace_id,
            )
            # The allocation is the share of the amount this leg's sent quantity stands for; the role says
            # whether it closes, opens or flips (a hedge remainder is a second, opening order; decision 0318).
            SignalOrderRelationship.objects.create(signal=signal, order=order, allocation_amount=leg.allocation_amount,
                                                   role=leg.role)  # fmt: skip
            orders.append(order)
    return orders


def _submit_and_finish(signal: TradingSignal, orders: list[Order], *, summary: str) -> TradingSignal:
    status, detail = _outcome(orders)
    return _finish(signal, status, f"{summary}: {detail}" if summary else detail)


def _outcome(orders: list[Order]) -> tuple[str, str]:
    statuses = [o.status for o in orders]
    if all(s == OrderStatus.DRY_RUN for s in statuses):
        return SignalStatus.DRY_RUN, f"dry-run: {len(orders)} order(s) recorded, nothing sent"
    placed = [o for o in orders if o.status in ACKNOWLEDGED]
    if len(placed) == len(orders):
        return SignalStatus.EXECUTED, f"{len(orders)} order(s) placed"
    problems = "; ".join(_order_problem(o) for o in orders if o.status not in ACKNOWLEDGED)
    head = f"{len(placed)} of {len(orders)} order(s) placed; " if placed else ""
    if placed:
        return SignalStatus.EXECUTED, head + problems
    if all(o.status == OrderStatus.REJECTED for o in orders):
        return SignalStatus.REJECTED, problems
    return SignalStatus.FAILED, problems


def _order_problem(order: Order) -> str:
    if order.status == OrderStatus.REJECTED:
        return f"{order.order_link_id} rejected by the exchange: retCode {order.reject_code} {order.reject_reason}"
    if order.status == OrderStatus.PENDING_SUBMIT:
        return f"{order.order_link_id} outcome unknown after retries"
    return f"{order.order_link_id} {order.status}: {order.reject_reason}"


def _finish(signal: TradingSignal, status: str, reason: str) -> TradingSignal:
    # savepoint=False: inside the executor's transaction this joins it (no SAVEPOINT round trips).
    with transaction.atomic(savepoint=False):
        now = timezone.now()
        changed = TradingSignal.objects.filter(pk=signal.pk, status__in=UNFINISHED).update(
            status=status, reason=reason, processed_at=now
        )
        if changed:
            signal.status, signal.reason, signal.processed_at = status, reason, now
        else:
            signal.refresh_from_db()
        if changed:
            events.publish_event_on_commit(routing_key=_SIGNAL_EVENT[status], payload=signal_event_payload(signal))
            metrics.signal_finished_on_commit(signal)
    level = log.info if status in (SignalStatus.EXECUTED, SignalStatus.DRY_RUN) else log.warning
    level("signal_finished", status=status, reason=reason)
    return signal


_SIGNAL_EVENT = {
    SignalStatus.EXECUTED: events.SIGNAL_EXECUTED,
    SignalStatus.REJECTED: events.SIGNAL_REJECTED,
    SignalStatus.FAILED: events.SIGNAL_FAILED,
    SignalStatus.DRY_RUN: events.SIGNAL_DRY_RUN,
}


def _warn_clock_skew(signal: TradingSignal) -> None:
    if signal.signal_timestamp is None:
        return
    skew = abs(signal.received_at - signal.signal_timestamp)
    if skew > timedelta(seconds=settings.SIGNAL_MAX_CLOCK_SKEW):
        log.warning(
            "signal_clock_skew",
            signal_timestamp=signal.signal_timestamp.isoformat(),
            received_at=signal.received_at.isoformat(),
            skew_seconds=round(skew.total_seconds(), 3),
            max_skew_seconds=settings.SIGNAL_MAX_CLOCK_SKEW,
        )


# --- the long-running processor ---------------------------------------------------------------------------------


class SignalProcessor:
    """Worker threads that drain the inbox until ``stop()``; used by consume_signals and process_signals.

    A worker waits for a wake-up: a symbol offered by the local intake (taken at once, no inbox search), or
    a bare wake (the PostgreSQL NOTIFY listener, for intakes in other processes) that makes it look for
    work; without either it polls every ``poll_interval`` seconds, the safety net, never on the path of a
    signal stored in this process. ``stop()`` lets each worker finish the signal in hand and exit;
    ``join()`` waits for them.
    """

    def __init__(self, *, threads: int = 4, poll_interval: float = 0.5):
        self.threads = threads
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._listener: threading.Thread | None = None
        # Health, read by the heartbeat thread; each key is written by its own worker only.
        self._in_hand: dict[str, tuple[int, float]] = {}  # worker → (inbox id, since)
        self._done: dict[str, int] = {}
        self._last_error: tuple[str, float] | None = None
        self._paths_at_start = fresh_position.position_path_counts()

    def start(self) -> None:
        risk_limit_seed_global()
        close_old_connections()
        if connection.vendor == "postgresql":
            self._listener = threading.Thread(target=self._listen, name="signal-inbox-listener", daemon=True)
            self._listener.start()
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"signal-worker-{index}", daemon=True)
            worker.start()
            self._workers.append(worker)
        log.info("signal_processor_started", threads=self.threads)

    def stop(self) -> None:
        self._stop.set()
        _wake.wake_all()

    def join(self, timeout: float | None = None) -> bool:
        for worker in self._workers:
            worker.join(timeout)
        if self._listener is not None:
            self._listener.join(timeout)  # its connection closes with it
        return not any(w.is_alive() for w in self._workers)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def health(self) -> tuple[bool, str]:
        """(ok, detail) for the heartbeat: workers alive, none stuck on one signal, no recent worker error."""
        now = time.monotonic()
        alive = sum(w.is_alive() for w in self._workers)
        problems = []
        if alive < len(self._workers) and not self.stopping:
            problems.append(f"{len(self._workers) - alive} worker thread(s) died")
        for name, (inbox_id, since) in list(self._in_hand.items()):
            if now - since > STUCK_AFTER_SECONDS:
                problems.append(f"{name} has been on inbox signal {inbox_id} for {now - since:.0f} s")
        error = self._last_error
        if error and now - error[1] <= ERROR_RECENT_SECONDS:
            problems.append(f"worker error {now - error[1]:.0f} s ago: {error[0]}")
        detail = f"processor {alive}/{len(self._workers)} workers, {sum(self._done.values())} signals done"
        # Since this processor started (docs/decisions/0316), and the symbols held now (0315): shown when any.
        now_counts = fresh_position.position_path_counts()
        paths = {k: now_counts[k] - self._paths_at_start.get(k, 0) for k in now_counts}
        extra = []
        if any(paths.values()):
            extra.append("positions decided on: book current {book_current}, after waiting for fills {waited}, read "
                         "from the exchange {read_exchange}, re-planned after a refusal {replanned}".format(**paths))
        holds = order_holds.held_symbols()
        if holds:
            extra.append(f"held: {order_holds.held_symbols_text(holds)}")
        return not problems, "; ".join([detail, *extra, *problems])

    def _run(self) -> None:
        # The first turn looks for work at once: signals left unfinished when the process last stopped.
        backoff, worked = self.poll_interval, True
        try:
            while not self._stop.is_set():
                # After a turn that did work, look again at once; otherwise wait for a wake-up (an offered
                # symbol, handed straight to this worker), or poll when none comes.
                job = _wake.take(0 if worked else backoff)
                if self._stop.is_set():
                    break
                try:
                    worked = self._symbol(job) if isinstance(job, str) else self._round()
                    backoff = self.poll_interval
                except Exception as exc:
                    # Typically the database went away: the advisory locks went with the connection; start afresh.
                    log.error("signal_worker_error", error=f"{type(exc).__name__}: {exc}")
                    self._last_error = (f"{type(exc).__name__}: {exc}"[:200], time.monotonic())
                    connection.close()
                    worked = False
                    backoff = min(backoff * 2, 10.0)
        finally:
            connection.close()

    def _listen(self) -> None:
        """Turn PostgreSQL NOTIFYs from intakes in other processes into local wake-ups (best effort: workers also
        poll). A NOTIFY of this process's own intake is skipped: its symbols were offered already."""
        db = connection.settings_dict
        params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
                  "port": db["PORT"]}
        params = {k: v for k, v in params.items() if v}
        while not self._stop.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {INBOX_CHANNEL}")
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=1.0, stop_after=1):
                            if notify.pid not in _wake.local_backends:
                                _wake.set()
            except Exception as exc:
                log.warning("inbox_listener_error", error=str(exc))
                self._stop.wait(2.0)

    def _round(self) -> bool:
        """Look for work: take the first free symbol with unfinished signals and hand the others to idle sibling
        workers (offered, so none of them searches again); True when a signal was processed."""
        symbols = symbols_with_work()
        for index, symbol in enumerate(symbols):
            if self._stop.is_set():
                break
            if not symbol_lock_try(symbol):
                continue
            if index < len(symbols) - 1:
                # Only after taking one: a worker that finds every symbol taken must not keep the others spinning.
                _wake.offer(symbols[index + 1:])
            return self._drain_held(symbol)
        return False

    def _symbol(self, symbol: str) -> bool:
        """An offered symbol: take it (or leave it to the worker holding it, which looks once more) and drain it."""
        if not symbol_lock_try(symbol):
            _wake.missed(symbol)
            # Taken again: the holder let it go after our first try, so a newer holder reads the inbox afresh,
            # or it still holds it and finds the note when it lets go.
            if not symbol_lock_try(symbol):
                return False
            _wake.take_missed(symbol)
        return self._drain_held(symbol)

    def _drain_held(self, symbol: str) -> bool:
        """Process up to BATCH_PER_SYMBOL of the held symbol's signals, then let it go; True when one was done."""
        name = threading.current_thread().name
        worked = more = False
        try:
            batch = _next_signals(symbol, BATCH_PER_SYMBOL)
            more = len(batch) == BATCH_PER_SYMBOL
            for signal in batch:
                if self._stop.is_set():
                    break
                self._in_hand[name] = (signal.pk, time.monotonic())
                try:
                    result = signal_process(signal=signal)
                finally:
                    del self._in_hand[name]
                if result.status in UNFINISHED:
                    more = False
                    break  # held: the symbol's later signals wait (docs/decisions/0315)
                self._done[name] = self._done.get(name, 0) + 1
                worked = True
        finally:
            symbol_lock_release(symbol)
        if _wake.take_missed(symbol) or more:
            _wake.offer([symbol])  # arrivals while we held it, or the rest after its fair share: at the back
        return worked
