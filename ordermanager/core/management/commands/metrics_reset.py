"""Empty the metrics directory (METRICS_DIR) when the service starts: `make run` does it before starting the
processes; under systemd, an ExecStartPre of the web unit or a tmpfs directory (docs/supervision.md).

Run it only while none of the service's processes run: their open value files would be lost.
"""

import os

from django.conf import settings
from django.core.management.base import BaseCommand

from ordermanager.metrics_dir import metrics_dir_pids, metrics_dir_reset, pid_alive


class Command(BaseCommand):
    help = "Delete the metric value files of earlier runs (METRICS_DIR); refuses while a process that wrote one lives."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="delete even files of processes still running")

    def handle(self, *args, force=False, **options):
        pids = metrics_dir_pids(settings.METRICS_DIR) - {os.getpid()}
        alive = sorted(pid for pid in pids if pid_alive(pid))
        if alive and not force:
            self.stdout.write(f"metrics kept: processes {alive} still write to {settings.METRICS_DIR}")
            return
        removed = metrics_dir_reset(settings.METRICS_DIR)
        self.stdout.write(f"metrics reset: {removed} file(s) removed from {settings.METRICS_DIR}")
