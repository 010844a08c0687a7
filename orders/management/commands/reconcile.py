"""manage.py reconcile — compare the books with the exchange and settle every difference.

Exit codes (for scripts and cron):
  0  the books equal the exchange (everything found was resolved)
  1  the run failed (exchange unreachable, ...): the reason is printed and on the run
  2  discrepancies remain unresolved (a person must look; see the admin or --json)
  3  another reconciliation run is in progress (try --wait SECONDS)
 64  bad arguments (e.g. a malformed --symbol)
"""

from __future__ import annotations

import json
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from orders.models import ReconciliationRun
from orders.reconcile import ReconciliationInProgress, reconcile
from orders.reconcile.report import reconcile_run_as_dict

EXIT_FAILED, EXIT_UNRESOLVED, EXIT_BUSY, EXIT_USAGE = 1, 2, 3, 64
COUNT_COLUMNS = ("checked", "updated", "backfilled", "external", "failed", "discrepancies", "unresolved")
MAX_ROWS = 50


class ProgressBar:
    """One line on the terminal, redrawn in place: ``stage [#####.....] done/total``."""

    WIDTH = 30

    def __init__(self, out):
        self.out = out
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage and self.stage:
            self.out.write("\n", ending="")
        self.stage = stage
        filled = self.WIDTH if total <= 0 else self.WIDTH * done // total
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.out.write(f"\r{stage:<12} [{bar}] {done}/{total}", ending="")
        self.out.flush()

    def close(self) -> None:
        if self.stage:
            self.out.write("\n", ending="")


class Command(BaseCommand):
    help = "Compare orders, executions and positions with Bybit and settle every difference (see the exit codes)."

    def add_arguments(self, parser):
        parser.add_argument("--symbol", help="Only this symbol (e.g. BTCUSDT). Default: every symbol the desk trades.")
        parser.add_argument("--dry-run", action="store_true", help="Record what differs; change nothing.")
        parser.add_argument("--json", action="store_true", help="Print the run (with its discrepancies) as JSON.")
        parser.add_argument(
            "--no-fix",
            action="store_true",
            help="Leave positions the fills cannot explain as they are (the symbol still goes reduce-only).",
        )
        parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                            help="Wait this long for a run in progress instead of exiting with 3.")  # fmt: skip

    def handle(self, *args, **options):
        as_json = options["json"]
        bar = ProgressBar(self.stderr) if not as_json and self.stderr.isatty() else None
        started = time.monotonic()
        try:
            run = reconcile(
                trigger=ReconciliationRun.Trigger.COMMAND,
                symbol=options["symbol"],
                dry_run=options["dry_run"],
                fix_positions=not options["no_fix"],
                wait=options["wait"],
                progress=bar,
            )
        except ReconciliationInProgress as exc:
            raise CommandError(exc.message, returncode=EXIT_BUSY) from None
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages), returncode=EXIT_USAGE) from None
        finally:
            if bar is not None:
                bar.close()
        report = reconcile_run_as_dict(run)
        if as_json:
            self.stdout.write(json.dumps(report, indent=2, sort_keys=True))
        else:
            self._summary(report, seconds=time.monotonic() - started)
        if run.status == ReconciliationRun.Status.FAILED:
            raise CommandError(f"reconciliation #{run.pk} failed: {run.error}", returncode=EXIT_FAILED)
        if report["counts"]["unresolved"]:
            raise CommandError(
                f"reconciliation #{run.pk}: {report['counts']['unresolved']} discrepancy(ies) unresolved",
                returncode=EXIT_UNRESOLVED,
            )

    def _summary(self, report: dict, *, seconds: float) -> None:
        scope = report["symbol"] or "all symbols"
        title = f"Reconciliation #{report['id']} {report['status']} ({scope}{', dry run' if report['dry_run'] else ''})"
        self.stdout.write(self.style.MIGRATE_HEADING(f"{title} in {seconds:.1f} s"))
        self.stdout.write(_table([COUNT_COLUMNS, [str(report["counts"][c]) for c in COUNT_COLUMNS]], right=True))
        if report["error"]:
            self.stdout.write(self.style.ERROR(f"error: {report['error']}"))
        rows = report["discrepancies"]
        if not rows:
            self.stdout.write(self.style.SUCCESS("No discrepancies: the books equal the exchange."))
            return
        table = [("kind", "symbol", "order link id", "resolved", "note")]
        table += [(d["kind"], d["symbol"], d["order_link_id"], "yes" if d["resolved"] else "NO", d["note"][:80])
                  for d in rows[:MAX_ROWS]]  # fmt: skip
        self.stdout.write(_table(table))
        if len(rows) > MAX_ROWS:
            self.stdout.write(f"... and {len(rows) - MAX_ROWS} more (see --json or the admin)")


def _table(rows, *, right: bool = False) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [str(c).rjust(w) if right else str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
