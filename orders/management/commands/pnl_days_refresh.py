"""manage.py pnl_days_refresh — sum the closed days the PnL report reads (backfill, rebuild).

    manage.py pnl_days_refresh              # every closed day not summed yet, from each position's first fill
    manage.py pnl_days_refresh --days 30    # only the last 30 days
    manage.py pnl_days_refresh --rebuild    # forget every summed day first, then sum again

The report is right without them (it reads what is not summed from the ledger); they make it fast.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from ordermanager.core.epoch import epoch_ms
from orders.services.pnl_days import pnl_days_refresh


class Command(BaseCommand):
    help = "Sum the closed days of the PnL report by strategy from the positions' ledger."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="only the last N days (default: all)")
        parser.add_argument("--rebuild", action="store_true", help="forget the stored days first")

    def handle(self, *args, **options):
        days = options["days"]
        since_ms = epoch_ms(timezone.now()) - days * 86_400_000 if days else None
        stored = pnl_days_refresh(since_ms=since_ms, rebuild=options["rebuild"])
        self.stdout.write(f"PnL days stored: {stored}")
