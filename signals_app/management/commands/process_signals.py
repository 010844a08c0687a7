"""Drain the signal inbox into orders without a broker (the embedded default).

    python manage.py process_signals [--threads N] [--once]

Signals arrive through POST /api/signals/ and ``manage.py send_signal``. With a
broker, ``consume_signals`` does intake and processing, and this command is
only needed to add processing capacity. ``--once`` processes what is waiting and exits.
Either way the books are reconciled with the exchange (trigger ``startup``) before the first signal,
after waiting for the database; then (not with ``--once``) reconciliation goes on continuously
(``ContinuousReconciler``, docs/decisions/0606).
"""

import signal as os_signal
import threading

import structlog
from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand

from ordermanager.core.services.startup_wait import StartupAborted, stop_on_signals, wait_for_services
from ordermanager.events import events_flush
from ordermanager.outbox import relay_thread_start
from orders.services.reconcile_continuous import ContinuousReconciler
from signals_app.services.pipeline_runtime import ProcessHeartbeat, pipeline_startup, process_label, processor_probe
from signals_app.services.signal_processor import SignalProcessor, process_pending

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    # A worker needs sound models, not the URLconf or templates: a web-only mistake must not stop trading.
    requires_system_checks = [Tags.models, Tags.database]
    help = "Process the signal inbox (per-symbol FIFO) until stopped."

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int, default=None, help="worker threads")
        parser.add_argument("--once", action="store_true", help="process what is waiting, then exit")

    def handle(self, *args, threads=None, once=False, **options):
        # Wait for the database (backoff, a log line per attempt) rather than exit with a traceback.
        stopping = stop_on_signals()
        try:
            wait_for_services(broker=False, stop=stopping)
        except StartupAborted as exc:
            log.info("process_signals_stopped", reason=str(exc))
            return
        if once:
            pipeline_startup()
            done = process_pending()
            events_flush(timeout=5)
            self.stdout.write(f"processed {done} signal(s)")
            return
        processor = SignalProcessor(threads=threads or settings.SIGNAL_PROCESSOR_THREADS)
        stopped = threading.Event()

        def stop(signum, frame):
            log.info("stop_requested", signal=os_signal.Signals(signum).name)
            processor.stop()
            stopped.set()

        os_signal.signal(os_signal.SIGTERM, stop)
        os_signal.signal(os_signal.SIGINT, stop)
        started = False
        continuous = ContinuousReconciler()
        heartbeat = ProcessHeartbeat(label=process_label("process_signals"),
                                     probe=processor_probe(processor=processor, starting=lambda: not started))
        heartbeat.start()
        relay = relay_thread_start()  # events out (one relay active across processes)
        try:
            pipeline_startup()
            processor.start()
            continuous.start()  # light passes and in-flight checks (docs/decisions/0606)
            started = True
            while not stopped.wait(1.0):
                pass
            processor.join(timeout=60)
            events_flush(timeout=5)
        finally:
            continuous.stop()
            if relay:
                relay.stop()
            heartbeat.stop()
        log.info("process_signals_stopped")
