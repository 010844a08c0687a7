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

import structlog
from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand

from ordermanager.core.services.startup_wait import StartupAborted
from ordermanager.events import events_flush
from signals_app.services.pipeline_runtime import PipelineCommand, pipeline_startup, processor_probe
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
        run = PipelineCommand("process_signals")
        sequence = run.sequence
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
        run.metrics_start()
        run.handle_signals()

        def start() -> None:
            processor = SignalProcessor(threads=threads or settings.SIGNAL_PROCESSOR_THREADS)
            run.start(processor=processor, probe=processor_probe(processor=processor, starting=run.starting))
            log.info("process_signals_started", threads=processor.threads, attempts=sequence.attempts)

        try:
            sequence.run(start)
            while not run.stopping.wait(1.0):  # a timed wait keeps the main thread responsive to signals
                pass
        except StartupAborted as exc:
            log.info("process_signals_stopping", reason=str(exc))
        finally:
            sequence.finish()
        log.info("process_signals_stopped")
