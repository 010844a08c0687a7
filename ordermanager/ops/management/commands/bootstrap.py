"""First-run setup for `make run`: an admin login and the global risk limits.

Idempotent: an existing admin keeps its password (unless ADMIN_PASSWORD is
set, which then wins) and existing risk limits are never overwritten.
"""

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from orders.services.risk_limits import risk_limit_seed_global


class Command(BaseCommand):
    help = "Create the admin login (ADMIN_USERNAME/ADMIN_PASSWORD, or a generated password) and seed risk limits."

    def handle(self, *args, **options):
        username = os.environ.get("ADMIN_USERNAME", "admin")
        password = os.environ.get("ADMIN_PASSWORD", "")
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            generated = not password
            password = password or secrets.token_urlsafe(12)
            user_model.objects.create_superuser(username=username, email="", password=password)
            shown = password if generated else "(from ADMIN_PASSWORD)"
            self.stdout.write(self.style.SUCCESS(f"Admin login created: {username} / {shown}"))
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"Admin login {username}: password set from ADMIN_PASSWORD")
        else:
            self.stdout.write(f"Admin login {username} exists (password unchanged; set ADMIN_PASSWORD to reset it)")
        created = risk_limit_seed_global()
        if created:
            self.stdout.write("Global risk limits seeded from the settings")
        self.stdout.write(f"Admin: http://127.0.0.1:{settings.WEB_PORT}/admin/")
