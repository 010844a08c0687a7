"""The per-symbol FIFO processor: drains the inbox into orders.

Ordering (design property 3): a worker takes a symbol with
``symbol_lock_try`` (advisory lock on PostgreSQL, so at most one worker in
all processes holds it) and processes that symbol's unfinished signals
strictly by inbox id. Different symbols run in parallel in the worker
threads of every process. See docs/decisions/0301-signal-pipeline.md.

One signal (``signal_process``): its orders are planned, recorded, sent and
settled by ``orders.services.signal_orders`` (crash safety, holds, fresh
positions); the signal's status follows their placement through
``signal_outcome.SignalCommit``, committed with the last leg's outcome
(docs/decisions/0323). A held signal stays ``processing`` and keeps its
symbol: the worker stops there until the outcome is known (docs/decisions/0315).
"""

from __future__ import annotations

import functools
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import structlog
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.db.models import Min
from django.utils import timezone

from ordermanager import metrics
from ordermanager.core.prebuilt_sql import qn, rows_select, select_sql
from ordermanager.core.sql_once import OrmStatement
from orders.models import OrderHold, Side
from orders.services import fill_wakeups, fresh_position, order_holds
from orders.services.risk_limits import risk_limit_seed_global
from orders.services.signal_orders import SignalOrderInput, orders_place_for_signal, signal_orders_resume
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.intake import INBOX_CHANNEL, notify_symbols
from signals_app.services.signal_outcome import UNFINISHED, SignalCommit, signal_finish
from signals_app.services.symbol_lock import symbol_held_here, symbol_lock_release, symbol_lock_try

log = structlog.get_logger(__name__)

# A worker gives its symbol back after this many signals so a busy symbol cannot starve the others.
BATCH_PER_SYMBOL = 50
# Health: one signal in hand longer than this (cancels and a create, each with the client's retries, take far
# less) or a worker error this recent makes the processor unhealthy in the heartbeat.
STUCK_AFTER_SECONDS = 120.0
ERROR_RECENT_SECONDS = 60.0



class _Wakeups:
    """This process's wake-ups of the processor workers (docs/decisions/0324, 0326).

    ``offer(symbols)`` hands each symbol to one idle worker, which takes it at once without reading the inbox
    for symbols with work (the local intake's symbols, and those another process's intake names in its
    NOTIFY); ``set()`` (a wake without symbols: a NOTIFY too long to name them, a stop) asks one worker to
    look for work. ``is_set``/``clear``/``wait`` read as ``threading.Event``'s. Inside ``deferred()``
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

    def _deferred(self) -> bool:
        return getattr(self._local, "held", None) is not None

    def set(self) -> None:
        if self._deferred():
            return  # the deferred() block ends with an offer of what it stored
        with self._cond:
            self._scan = True
            self._cond.notify()

    def offer(self, symbols) -> None:
        if self._deferred():
            return  # an intake's on-commit offer inside the block: the block's owner offers all it stored
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
        """A worker found ``symbol`` taken in this process: the holder looks at it once more after letting it
        go. (Taken in another process: that process was offered the symbol too, by the intake's NOTIFY, and its
        worker leaves the note there; docs/decisions/0326.)"""
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
    # With and without a symbol these are two statements (an OrmStatement compiles one per set of slots).
    rows = _WORK.rows(now=timezone.now(), symbol=symbol) if symbol else _WORK.rows(now=timezone.now())
    return [asset for (asset,) in rows]


def _symbols_with_work_query(now, symbol=None):
    waiting = OrderHold.objects.filter(state=OrderHold.State.HELD, next_check_at__gt=now)
    qs = TradingSignal.objects.filter(status__in=UNFINISHED).exclude(asset__in=waiting.values("symbol"))
    if symbol is not None:
        qs = qs.filter(asset=symbol)
    return qs.values("asset").annotate(first=Min("id")).order_by("first").values_list("asset", flat=True)


def _next_signals(symbol: str, limit: int) -> list[TradingSignal]:
    """The symbol's next unfinished signals in arrival order, read at once: the caller holds the symbol, so
    nobody else changes them, and later arrivals are picked up by the next read."""
    return rows_select(TradingSignal, _next_sql(connection.vendor), [symbol, *UNFINISHED, limit])


@functools.cache
def _next_sql(vendor: str) -> str:
    """``_next_signals``' statement, written once per process (the ORM compiled it on every read: a raw
    queryset of a compiled statement, docs/decisions/0328, 0335)."""
    marks = ", ".join(["%s"] * len(UNFINISHED))
    return select_sql(TradingSignal, f"{qn('asset')} = %s AND {qn('status')} IN ({marks})",
                      order_by=qn("id")) + " LIMIT %s"


# Run by every worker's search: compiled by the ORM once per process (docs/decisions/0328).
_WORK = OrmStatement(_symbols_with_work_query)


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
    """Take one signal to a terminal state (or keep it held). The caller must hold the symbol lock.

    The orders are orders' business (``orders.services.signal_orders``); the signal's status follows their
    placement through ``SignalCommit`` (``signal_outcome``, docs/decisions/0323)."""
    with structlog.contextvars.bound_contextvars(signal_id=str(signal.signal_id), trace_id=signal.trace_id):
        # `processing` is set in the transaction that commits the orders (one commit fewer per signal); a
        # signal with orders but no terminal status is resumed whatever its status says.
        if signal.status not in UNFINISHED:
            return signal
        metrics.signal_work_started()
        try:
            order_input, commit = signal_order_input(signal), SignalCommit(signal)
            # Orders are committed with the `processing` status, so a `received` signal has none to resume.
            resumed = None if signal.status == SignalStatus.RECEIVED else signal_orders_resume(
                signal=order_input, signal_commit=commit)
            if resumed is None:
                _warn_clock_skew(signal)
                orders_place_for_signal(signal=order_input, signal_commit=commit)
            return signal
        except DatabaseError:
            raise  # the worker backs off; the signal stays `processing` and is resumed
        except Exception as exc:
            # A bug must not block the symbol forever nor kill the worker: fail this signal, loudly.
            log.exception("signal_process_crashed")
            return signal_finish(signal, SignalStatus.FAILED, f"internal error: {type(exc).__name__}: {exc}")


def signal_order_input(signal: TradingSignal) -> SignalOrderInput:
    """What the orders side needs of ``signal`` (it reads no inbox model)."""
    return SignalOrderInput(
        pk=signal.pk, signal_id=signal.signal_id, side=Side.BUY if signal.signal_type == "buy" else Side.SELL,
        symbol=signal.asset, amount=signal.amount, confidence=signal.confidence, urgency=signal.urgency,
        snapshot_price=signal.snapshot_price, snapshot_spread=signal.snapshot_spread,
        strategy_id=signal.strategy_id, trace_id=signal.trace_id,
    )


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

    A worker waits for a wake-up: a symbol offered by the local intake or named by another process's intake
    in its PostgreSQL NOTIFY (taken at once, no inbox search; docs/decisions/0326), or a bare wake that makes
    it look for work; without either it polls every ``poll_interval`` seconds
    (``SIGNAL_PROCESSOR_POLL_SECONDS``), the safety net, not on the path of a signal stored while a processor
    worker of any process holds its symbol. ``stop()`` lets each worker finish the signal in hand and exit;
    ``join()`` waits for them.
    """

    def __init__(self, *, threads: int = 4, poll_interval: float | None = None):
        self.threads = threads
        self.poll_interval = settings.SIGNAL_PROCESSOR_POLL_SECONDS if poll_interval is None else poll_interval
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
        poll): the symbols a NOTIFY names are offered to idle workers as the local intake's are (a worker that
        finds one held by a sibling leaves the note its holder reads when it lets go; docs/decisions/0326), an
        empty one makes a worker look for work. A NOTIFY of this process's own intake is skipped: its symbols
        were offered already. A NOTIFY of the fill path (any process) wakes the decisions of this process
        that wait for the symbols' fills (docs/decisions/0327)."""
        db = connection.settings_dict
        params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
                  "port": db["PORT"]}
        params = {k: v for k, v in params.items() if v}
        while not self._stop.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as conn:
                    conn.execute(f"LISTEN {INBOX_CHANNEL}")
                    conn.execute(f"LISTEN {fill_wakeups.CHANNEL}")
                    while not self._stop.is_set():
                        for notify in conn.notifies(timeout=1.0, stop_after=1):
                            if notify.channel == fill_wakeups.CHANNEL:
                                fill_wakeups.fills_booked_notice(notify.payload)  # a waiting decision looks again
                            elif notify.pid not in _wake.local_backends:
                                processor_wake(notify_symbols(notify.payload))
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
                if symbol_held_here(symbol):
                    _wake.missed(symbol)  # a sibling holds it: it looks once more when it lets go
                continue
            if index < len(symbols) - 1:
                # Only after taking one: a worker that finds every symbol taken must not keep the others spinning.
                _wake.offer(symbols[index + 1:])
            return self._drain_held(symbol)
        return False

    def _symbol(self, symbol: str) -> bool:
        """An offered symbol: take it (or leave it to the worker holding it, which looks once more) and drain it."""
        if not symbol_lock_try(symbol):
            if not symbol_held_here(symbol):
                # Held in another process: its own workers were offered the symbol by the same NOTIFY (or
                # the holder's intake offered it locally), and the note is left there.
                return False
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
