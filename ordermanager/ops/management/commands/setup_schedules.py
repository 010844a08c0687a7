"""Create or update the django-q2 schedules (idempotent; safe on every start).

Fill side (orders.jobs.SCHEDULES): position snapshots, validation
against fills, mark prices, loss warnings, stale-order sweep, each interval
from its setting. Reconciliation's optional schedule comes from
orders.jobs (RECONCILE_INTERVAL_MINUTES, off at 0). The alert thresholds are
evaluated every ALERT_EVALUATION_INTERVAL (ordermanager.ops.alerts). The exchange-call
audit's prune job comes from exchange.retention (EXCHANGE_CALL_PRUNE_INTERVAL).
"""

from django.core.management.base import BaseCommand

from exchange.retention import SCHEDULE_NAME as AUDIT_PRUNE
from exchange.retention import prune_schedule_ensure
from ordermanager.ops.alerts import alerts_schedule_ensure
from orders.jobs import SCHEDULES, reconcile_schedule_ensure, schedules_ensure


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules from the settings (idempotent)."

    def handle(self, *args, **options):
        result = schedules_ensure()
        for job in SCHEDULES:
            self.stdout.write(f"{job.name}: {result[job.name]} (every {job.minutes} min, {job.func})")
        self.stdout.write(f"reconcile: {reconcile_schedule_ensure()}")
        self.stdout.write(f"alerts: {alerts_schedule_ensure()}")
        self.stdout.write(f"{AUDIT_PRUNE}: {prune_schedule_ensure()}")
