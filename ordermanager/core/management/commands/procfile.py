"""Print the Procfile `make run` starts: Procfile.paper (with the simulator) only in the paper setup."""

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print which Procfile fits BYBIT_ENV: Procfile.paper (adds the simulator) or Procfile."

    def handle(self, *args, **options):
        self.stdout.write("Procfile.paper" if settings.BYBIT_ENV == "simulator" else "Procfile")
