"""Publish the transactional outbox's events to the broker (docs/decisions/0321).

    python manage.py relay_events [--once]

The same relay also runs as a thread of consume_signals and process_signals (``OUTBOX_RELAY``); one relay is
active at a time across processes, the others wait. ``--once``: publish what is unsent, prune, exit.
SIGTERM/SIGINT: finish the round in hand, exit 0.
"""

import signal as os_signal
import threading

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from ordermanager.outbox import OutboxRelay, outbox_prune

log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Publish outbox events to ORDER_EVENTS_EXCHANGE (at least once, confirmed), prune old ones."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="publish what is unsent, then exit")

    def handle(self, *args, once=False, **options):
        relay = OutboxRelay()
        if once:
            if not settings.SIGNAL_BROKER_URL:
                raise CommandError("SIGNAL_BROKER_URL is empty: events stay in the outbox (admin), nothing to relay")
            total = 0
            while sent := relay.relay_once():
                total += sent
            pruned = outbox_prune()
            self.stdout.write(f"published {total} event(s), pruned {pruned}")
            return
        stopped = threading.Event()

        def stop(signum, frame):
            log.info("stop_requested", signal=os_signal.Signals(signum).name)
            stopped.set()

        os_signal.signal(os_signal.SIGTERM, stop)
        os_signal.signal(os_signal.SIGINT, stop)
        relay.start()
        log.info("relay_events_started", exchange=relay.exchange_name)
        while not stopped.wait(1.0):
            pass
        relay.stop()
        log.info("relay_events_stopped", published=relay.published)
