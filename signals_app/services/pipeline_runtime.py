"""What a long-running signal process does around its work: reconcile first, then beat a heartbeat.

``pipeline_startup`` runs before ``consume_signals`` takes a message and before
``process_signals`` drains the inbox: the global risk row is seeded and the
books are reconciled with the exchange (``reconcile_on_startup``, trigger
``startup``), so no signal is decided against a book that a crash or an outage
left wrong (a fill we missed, an order whose answer was lost). It never raises
because of the exchange: a failed run is recorded with its reason and the
process carries on (see docs/decisions/0310-startup-reconcile.md).

``ProcessHeartbeat`` is a daemon thread that calls ``heartbeat_beat`` for the
``consumer`` component every ``SIGNAL_HEARTBEAT_INTERVAL`` seconds with what the
probe reports: a beat proves the process lives, ``ok`` says whether its loops
do their work (broker connected, intake loop turning, no processor worker dead
or stuck on one signal). See docs/decisions/0311-consumer-heartbeat.md.

``PipelineCommand`` is the start/stop frame ``consume_signals`` and ``process_signals`` share: the stop
event and the SIGTERM/SIGINT handlers, and the startup steps in their order (heartbeat, event relay,
events flush, ``pipeline_startup``, the processor, continuous reconciliation), each undone by
``StartupSequence`` if the database or the broker goes away before the process is up (decision 0006).
"""

from __future__ import annotations

import os
import signal as os_signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import structlog
from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from django.utils import timezone

from exchange.bybit.client import TIME_PATH, base_url_from_settings
from exchange.profile import log_startup_profile
from ordermanager.core.gc_policy import gc_policy_apply
from ordermanager.core.services.heartbeat import CONSUMER, heartbeat_beat
from ordermanager.core.services.startup_sequence import StartupSequence
from ordermanager.core.services.startup_wait import stop_on_signals
from ordermanager.events import events_flush
from ordermanager.metrics_process import metrics_process_start
from ordermanager.outbox import relay_thread_start
from orders.models import ReconciliationRun
from orders.reconcile import reconcile_on_startup
from orders.reconcile.continuous import ContinuousReconciler
from orders.services.risk_limits import risk_limit_seed_global
from signals_app.models import SignalStatus, TradingSignal

log = structlog.get_logger(__name__)

Probe = Callable[[], tuple[bool, str]]
# The intake loop turns every few milliseconds; this long without a turn while connected means it is wedged.
INTAKE_STALL_SECONDS = 30.0
_UNFINISHED = (SignalStatus.RECEIVED, SignalStatus.PROCESSING)


def pipeline_startup() -> ReconciliationRun | None:
    """Seed the global risk row and reconcile with the exchange; returns the startup run (None: skipped).

    Started together (``make run``), the exchange (the simulator) may not listen yet: the run waits,
    bounded by STARTUP_EXCHANGE_WAIT, for it to answer instead of recording a failed run at once."""
    log_startup_profile("signal processing")
    risk_limit_seed_global()
    exchange_wait_until_answering(timeout=settings.STARTUP_EXCHANGE_WAIT)
    return reconcile_on_startup()


def exchange_wait_until_answering(*, timeout: float) -> bool:
    """Poll the exchange's public clock until it answers (True) or ``timeout`` seconds pass (False)."""
    url = base_url_from_settings() + TIME_PATH
    started = time.monotonic()
    deadline, delay, said = started + timeout, 0.1, False
    while True:
        try:
            if httpx.get(url, timeout=max(0.1, min(2.0, deadline - time.monotonic()))).status_code == 200:
                if said:
                    log.info("exchange_answered", url=url, waited_seconds=round(time.monotonic() - started, 1))
                return True
        except httpx.HTTPError:
            pass
        now = time.monotonic()
        if now >= deadline:
            log.warning("exchange_not_answering", url=url, waited_seconds=timeout,
                        next="reconciling anyway; the run records the failure")  # fmt: skip
            return False
        if not said:
            log.info("waiting_for_exchange", url=url, up_to_seconds=timeout)
            said = True
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, 1.0)


def process_label(command: str) -> str:
    return f"{command} pid {os.getpid()} on {socket.gethostname()}"


def inbox_backlog() -> str:
    """Unfinished signals and the age of the oldest (one query on the status index), for the detail."""
    row = TradingSignal.objects.filter(status__in=_UNFINISHED).aggregate(n=Count("id"), oldest=Min("received_at"))
    if not row["n"]:
        return "inbox empty"
    age = max(timedelta(0), timezone.now() - row["oldest"]).total_seconds()
    return f"inbox {row['n']} unfinished, oldest {age:.1f} s"


class ProcessHeartbeat:
    """Beats ``component`` with ``probe()`` every ``interval`` seconds until ``stop``; the last beat says stopped."""

    def __init__(self, *, probe: Probe, label: str, component: str = CONSUMER, interval: float | None = None):
        self.probe = probe
        self.label = label
        self.component = component
        self.interval = settings.SIGNAL_HEARTBEAT_INTERVAL if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pipeline-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, *, detail: str = "stopped") -> None:
        """Stop beating; the last beat (ok=False) tells the dashboard the process stopped, not just went quiet."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._beat(ok=False, detail=detail)

    def _run(self) -> None:
        try:
            while True:
                ok, detail = self._probe()
                self._beat(ok=ok, detail=detail)
                if self._stop.wait(self.interval):
                    return
        finally:
            connection.close()  # this thread's own connection

    def _probe(self) -> tuple[bool, str]:
        try:
            return self.probe()
        except Exception as exc:  # a probe bug (or the database away) must not stop the beats
            return False, f"health probe failed: {type(exc).__name__}: {exc}"

    def _beat(self, *, ok: bool, detail: str) -> None:
        try:
            heartbeat_beat(component=self.component, ok=ok, detail=f"{self.label}: {detail}")
        except Exception as exc:  # the database is away: the beat goes stale, which is what it should show
            log.warning("heartbeat_failed", error=f"{type(exc).__name__}: {exc}")
            connection.close()


def consumer_probe(*, consumer, processor, starting: Callable[[], bool]) -> Probe:
    """The health of a consume_signals process: its intake consumer and its processor (if any)."""

    def probe() -> tuple[bool, str]:
        if starting():
            return True, "starting: reconciling with the exchange before taking messages"
        ok, parts = True, []
        idle = time.monotonic() - consumer.last_iteration
        if not consumer.connected:
            ok = False
            parts.append(f"broker unreachable ({consumer.connection_error or 'connecting'})")
        elif idle > INTAKE_STALL_SECONDS:
            ok = False
            parts.append(f"intake loop stalled for {idle:.0f} s")
        elif getattr(consumer, "standby", False):
            parts.append(f"queue {consumer.queue.name} standby: another consume_signals holds it")
        else:
            parts.append(f"queue {consumer.queue.name} connected")
        parts.append(f"{consumer.handled} messages taken")
        if processor is not None:
            processor_ok, detail = processor.health()
            ok = ok and processor_ok
            parts.append(detail)
        parts.append(inbox_backlog())
        return ok, "; ".join(parts)

    return probe


def processor_probe(*, processor, starting: Callable[[], bool]) -> Probe:
    """The health of a process_signals process."""

    def probe() -> tuple[bool, str]:
        if starting():
            return True, "starting: reconciling with the exchange before draining the inbox"
        ok, detail = processor.health()
        return ok, f"{detail}; {inbox_backlog()}"

    return probe


class PipelineCommand:
    """The start/stop frame of a long-running signal command (``consume_signals``, ``process_signals``).

    ``stopping`` is set by SIGTERM/SIGINT from the first moment (the waits for the database and the broker
    see it); ``handle_signals()`` then installs the handlers that also stop the processor and run the
    ``on_stop`` callbacks. ``start(processor=..., probe=...)`` is the body of ``sequence.run``: the startup
    steps in order, each registered to be undone. ``started`` is False until every step is done (the
    heartbeat says "starting" meanwhile).
    """

    def __init__(self, command: str, *, broker: bool = False, errors: tuple = ()):
        self.command = command
        self.stopping = stop_on_signals()
        self.sequence = StartupSequence(command, stop=self.stopping, broker=broker, errors=errors)
        self.processor = None
        self.started = False
        self._on_stop: list[Callable[[], object]] = []

    def metrics_start(self) -> None:
        metrics_process_start(self.command)

    def on_stop(self, callback: Callable[[], object]) -> None:
        self._on_stop.append(callback)

    def handle_signals(self) -> None:
        def stop(signum, frame):
            log.info("stop_requested", signal=os_signal.Signals(signum).name)
            self.stopping.set()
            for callback in self._on_stop:
                callback()
            if self.processor:
                self.processor.stop()

        os_signal.signal(os_signal.SIGTERM, stop)
        os_signal.signal(os_signal.SIGINT, stop)

    def starting(self) -> bool:
        return not self.started

    def start(self, *, processor, probe: Probe, stopped_detail: Callable[[], str] | None = None) -> None:
        """Heartbeat, event relay, events flush, reconcile (``pipeline_startup``), processor (if any),
        continuous reconciliation (docs/decisions/0606); each undone by the sequence when it starts over."""
        sequence = self.sequence
        self.started = False
        self.processor = processor
        sequence.step("heartbeat")
        heartbeat = ProcessHeartbeat(label=process_label(self.command), probe=probe)
        heartbeat.start()
        sequence.started("heartbeat", (lambda: heartbeat.stop(detail=stopped_detail())) if stopped_detail
                         else heartbeat.stop)  # fmt: skip
        sequence.step("relay")
        relay = relay_thread_start()  # events out (one relay active across processes)
        if relay:
            sequence.started("relay", relay.stop)
        sequence.started("events", lambda: events_flush(timeout=5))
        # Reconcile before the first message and the first inbox signal: decisions need a true book.
        sequence.step("pipeline_startup")
        pipeline_startup()
        if processor:
            sequence.step("processor")
            sequence.started("processor", lambda: (processor.stop(), processor.join(timeout=60)))
            processor.start()
        sequence.step("continuous")
        continuous = ContinuousReconciler()
        continuous.start()  # light passes and in-flight checks (docs/decisions/0606)
        sequence.started("continuous", continuous.stop)
        self.started = True
        gc_policy_apply(self.command)  # every step imported what it needs: freeze it (docs/decisions/0331)
