"""Consume the signal queue into the inbox and process it.

    python manage.py consume_signals [--threads N] [--no-process] [--queue NAME]

Startup: the books are reconciled with the exchange (trigger ``startup``)
before any message is taken or any inbox signal is processed. Intake: kombu
consumer on ``SIGNAL_QUEUE`` taken as it was declared (classic, single-active-consumer or
quorum); one active intake at a time (the holder of an exclusive lock queue; a second process is a
hot standby that retries, docs/decisions/0320), ack after the inbox commit. Processing:
``--threads`` worker threads (default ``SIGNAL_PROCESSOR_THREADS``) drain the
inbox, one symbol per worker at a time across all processes. SIGTERM/SIGINT:
stop taking messages, finish the message and the signals in hand, exit 0.
Before all that it waits for the database and the broker (backoff, one log line
per attempt), and starts over if either goes away during the startup (decision 0006); after the
startup run it keeps reconciling continuously
(``ContinuousReconciler``, docs/decisions/0606).
"""

import structlog
from django.conf import settings
from django.core.checks import Tags
from django.core.management.base import BaseCommand, CommandError

from ordermanager.core.services.startup_wait import StartupAborted
from signals_app.amqp import SignalConsumer, broker_connection, consume_until_stopped, dead_letter_queue, ingress_queue
from signals_app.services.pipeline_runtime import PipelineCommand, consumer_probe
from signals_app.services.signal_processor import SignalProcessor

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    # A worker needs sound models, not the URLconf or templates: a web-only mistake must not stop trading.
    requires_system_checks = [Tags.models, Tags.database]
    help = "Consume trading signals from RabbitMQ into the inbox and turn them into orders."

    def add_arguments(self, parser):
        parser.add_argument("--threads", type=int, default=None, help="processor threads (0: intake only)")
        parser.add_argument("--no-process", action="store_true", help="intake only; another process drains the inbox")
        parser.add_argument("--queue", default=None, help=f"queue name (default {settings.SIGNAL_QUEUE})")

    def handle(self, *args, threads=None, no_process=False, queue=None, **options):
        if not settings.SIGNAL_BROKER_URL:
            raise CommandError(
                "SIGNAL_BROKER_URL is empty: there is no queue to consume. Without a broker, run "
                "`manage.py process_signals` and send signals with POST /api/signals/ or `manage.py send_signal`."
            )
        threads = settings.SIGNAL_PROCESSOR_THREADS if threads is None else threads
        connection = broker_connection()
        queue_name = queue or settings.SIGNAL_QUEUE
        consumer = SignalConsumer(connection, queue=ingress_queue(queue_name),
                                  dead_letter=dead_letter_queue(f"{queue_name}.dead" if queue else None))
        # Wait for PostgreSQL and RabbitMQ (backoff, a log line per attempt) rather than exit with a traceback;
        # if either goes away during the startup steps, they start over (StartupSequence, decision 0006).
        run = PipelineCommand("consume_signals", broker=True,
                              errors=connection.connection_errors + connection.channel_errors)
        run.metrics_start()
        run.on_stop(lambda: setattr(consumer, "should_stop", True))
        run.handle_signals()

        def start() -> None:
            processor = None if no_process or threads <= 0 else SignalProcessor(threads=threads)
            run.start(processor=processor,
                      probe=consumer_probe(consumer=consumer, processor=processor, starting=run.starting),
                      stopped_detail=lambda: f"stopped ({consumer.handled} messages taken)")  # fmt: skip
            log.info("consume_signals_started", queue=queue_name, threads=threads, prefetch=consumer.prefetch,
                     attempts=run.sequence.attempts)  # fmt: skip

        try:
            run.sequence.run(start)
            consume_until_stopped(consumer)
        except StartupAborted as exc:
            log.info("consume_signals_stopping", reason=str(exc))
        finally:
            run.sequence.finish()
            consumer.close()
            connection.release()
        log.info("consume_signals_stopped", handled=consumer.handled)
