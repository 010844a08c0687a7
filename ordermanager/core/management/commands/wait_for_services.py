"""Wait until the database (and, with --broker or SIGNAL_BROKER_URL set, the broker) answers, then exit 0.

    python manage.py wait_for_services [--broker | --no-broker]

Put in front of a process that does not wait by itself (the web server, qcluster):
``manage.py wait_for_services && exec uvicorn ...`` (Procfile), or ``ExecStartPre=`` in
systemd. SIGTERM/SIGINT while waiting exits 1.
"""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from ordermanager.core.services.startup_wait import StartupAborted, wait_for_services


class Command(BaseCommand):
    help = "Wait for the database (and the broker when configured), with backoff and a log line per attempt."
    requires_system_checks = []

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--broker", action="store_true", default=None, help="wait for the broker as well")
        group.add_argument("--no-broker", dest="broker", action="store_false", help="do not wait for the broker")

    def handle(self, *args, broker=None, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        try:
            wait_for_services(broker=broker, stop=stop)
        except StartupAborted as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("services ready")
