"""Create an API key for a service account; prints the key once (only its digest is stored)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from ordermanager.core.roles import VIEWER
from ordermanager.core.services.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create an API key for USER (created as a non-staff service account in a role group if missing)."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Service account username, e.g. model-service")
        parser.add_argument("--name", required=True, help="What the key is for, e.g. 'model-service prod'")
        parser.add_argument("--group", default=VIEWER, help=f"Role group for a new account (default {VIEWER!r})")

    def handle(self, *args, user, name, group, **options):
        user_model = get_user_model()
        account = user_model.objects.filter(username=user).first()
        if account is None:
            role = Group.objects.filter(name=group).first()
            if role is None:
                raise CommandError(f"No group {group!r}; use 'Viewer' or 'Risk staff'.")
            account = user_model.objects.create_user(username=user, is_staff=False)
            account.set_unusable_password()
            account.save()
            account.groups.add(role)
        _, raw_key = api_key_create(user=account, name=name)
        self.stdout.write("API key (shown once; store it in the caller's secret store):")
        self.stdout.write(raw_key)
        self.stdout.write("Send it as the header  Authorization: Api-Key <key>")
