"""Startup of the fill side (a Procfile process): schedules, ws-gateway registration, validation; then hold.

0. Wait for the database (backoff, a log line per attempt). Steps 1-3 (and starting
   continuous reconciliation) start over if it goes away during them (decision 0006).
1. ``setup_schedules`` (idempotent).
2. Register our subscription with ws-gateway (skipped in dry-run or when no
   gateway is configured), retrying with capped backoff until it answers: the
   gateway (or the simulator) may start after us. A refused key stops retrying.
3. Validate every position against its fills, repairing differences
   (property 8 at startup).
4. Hold until SIGTERM/SIGINT, reconciling continuously meanwhile (docs/decisions/0606),
   then end the subscription so ws-gateway stops pushing to an endpoint that is
   going away.
"""

from __future__ import annotations

import json
import signal
import threading

import structlog
from django.core.management import call_command
from django.core.management.base import BaseCommand

from ordermanager.core.services.startup_sequence import StartupSequence
from ordermanager.core.services.startup_wait import StartupAborted
from ordermanager.metrics_process import metrics_process_start
from orders.reconcile.continuous import ContinuousReconciler
from orders.services.gateway_registration import (
    GatewayRegistrationError,
    gateway_base_url,
    registration_request,
    ws_gateway_register,
    ws_gateway_unregister,
)
from orders.services.position_validation import positions_validate_against_fills

MAX_BACKOFF = 30.0
log = structlog.get_logger(__name__)


class Command(BaseCommand):
    help = "Set up schedules, register with ws-gateway, validate positions against fills, then hold."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="do the startup steps and exit (no hold)")
        parser.add_argument("--show", action="store_true", help="print the registration request and exit")

    def handle(self, *args, **options):
        if options["show"]:
            request = {"url": gateway_base_url() + "/ws-gateway/api/v1/subscriptions", "body": registration_request()}
            self.stdout.write(json.dumps(request, indent=2))
            return
        if not options["once"]:
            metrics_process_start("start_ingest")
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # Wait for the database; if it goes away during the steps below, they start over (decision 0006).
        sequence = StartupSequence("start_ingest", stop=stop)
        subscription: dict[str, str | None] = {}

        def start() -> None:
            sequence.step("setup_schedules")
            call_command("setup_schedules", stdout=self.stdout)
            if "id" not in subscription:  # registered once: a restarted sequence keeps the subscription
                sequence.step("ws_gateway_register")
                subscription["id"] = self._register(stop)
            sequence.step("positions_validate")
            found = positions_validate_against_fills(repair=True)
            self.stdout.write(f"positions validated against fills: {len(found)} discrepancies recorded")
            if options["once"]:
                return
            sequence.step("continuous")
            continuous = ContinuousReconciler()
            continuous.start()
            sequence.started("continuous", continuous.stop)
            log.info("start_ingest_started", attempts=sequence.attempts)

        try:
            sequence.run(start)
            if not options["once"]:
                stop.wait()
        except StartupAborted:
            pass
        finally:
            sequence.finish()
        subscription_id = subscription.get("id")
        if subscription_id and not options["once"] and ws_gateway_unregister(subscription_id=subscription_id):
            self.stdout.write(f"ws-gateway subscription {subscription_id} ended")

    def _register(self, stop: threading.Event) -> str | None:
        delay = 0.5
        while not stop.is_set():
            try:
                subscription_id = ws_gateway_register()
            except GatewayRegistrationError as exc:
                if not exc.retryable:
                    self.stderr.write(f"ws-gateway registration refused: {exc.message}")
                    return None
                self.stderr.write(f"ws-gateway registration failed ({exc.message}); retrying in {delay:g}s")
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.stdout.write(
                f"ws-gateway subscription: {subscription_id}" if subscription_id else "ws-gateway registration skipped"
            )
            return subscription_id
        return None
