"""Drain the signal inbox into orders without a broker (the embedded default).

    python manage.py process_signals [--threads N] [--once]

Signals arrive through POST /api/signals/ and ``manage.py send_signal``. With a
broker, ``consume_signals`` does intake and processing, and this command is
only needed to add processing capacity. ``--once`` processes what is waiting and exits.
Either way the books are reconciled with the exchange (trigger ``startup``) before the first signal,
after waiting for the database (started over if it goes away meanwhile, decision 0006); then (not
with ``--once``) reconciliation goes on continuously
(``ContinuousReconciler``, docs/decisions/0606).
"""

import signal as os_signal

import structlog
from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand

from ordermanager.core.services.startup_sequence import StartupSequence
from ordermanager.core.services.startup_wait import StartupAborted, stop_on_signals
from ordermanager.events import events_flush
from ordermanager.metrics_process import metrics_process_start
from ordermanager.outbox import relay_thread_start
from orders.reconcile.continuous import ContinuousReconciler
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
        # Wait for the database (backoff, a log line per attempt) rather than exit with a traceback; if it goes
        # away during the startup steps, they start over (StartupSequence, decision 0006).
        stopping = stop_on_signals()
        sequence = StartupSequence("process_signals", stop=stopping)
        if once:
            try:
                sequence.run(lambda: (sequence.step("pipeline_startup"), pipeline_startup()))
                done = process_pending()
                events_flush(timeout=5)
            except StartupAborted as exc:
                log.info("process_signals_stopped", reason=str(exc))
                return
            finally:
                sequence.finish()
            self.stdout.write(f"processed {done} signal(s)")
            return
        metrics_process_start("process_signals")
        current = {"processor": None, "started": False}

        def stop(signum, frame):
            log.info("stop_requested", signal=os_signal.Signals(signum).name)
            stopping.set()
            if current["processor"]:
                current["processor"].stop()

        os_signal.signal(os_signal.SIGTERM, stop)
        os_signal.signal(os_signal.SIGINT, stop)

        def start() -> None:
            current["started"] = False
            processor = current["processor"] = SignalProcessor(threads=threads or settings.SIGNAL_PROCESSOR_THREADS)
            sequence.step("heartbeat")
            heartbeat = ProcessHeartbeat(label=process_label("process_signals"),
                                         probe=processor_probe(processor=processor,
                                                               starting=lambda: not current["started"]))
            heartbeat.start()
            sequence.started("heartbeat", heartbeat.stop)
            sequence.step("relay")
            relay = relay_thread_start()  # events out (one relay active across processes)
            if relay:
                sequence.started("relay", relay.stop)
            sequence.started("events", lambda: events_flush(timeout=5))
            sequence.step("pipeline_startup")
            pipeline_startup()
            sequence.step("processor")
            sequence.started("processor", lambda: (processor.stop(), processor.join(timeout=60)))
            processor.start()
            sequence.step("continuous")
            continuous = ContinuousReconciler()
            continuous.start()  # light passes and in-flight checks (docs/decisions/0606)
            sequence.started("continuous", continuous.stop)
            current["started"] = True
            log.info("process_signals_started", threads=processor.threads, attempts=sequence.attempts)

        try:
            sequence.run(start)
            while not stopping.wait(1.0):  # a timed wait keeps the main thread responsive to signals
                pass
        except StartupAborted as exc:
            log.info("process_signals_stopping", reason=str(exc))
        finally:
            sequence.finish()
        log.info("process_signals_stopped")
