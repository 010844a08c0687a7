from django.apps import AppConfig
from django.apps import apps as live_apps
from django.db.models.signals import post_migrate

from ordermanager.core.formatting import admin_decimals_install
from ordermanager.core.roles import roles_sync


def _sync_roles(sender, using="default", apps=None, **kwargs):
    # Keeps the role groups exact as apps add models (see ordermanager/core/roles.py). `flush` (used
    # between transactional tests) sends the signal without `apps`: the live registry is current then.
    if using == "default":
        roles_sync(apps=apps or live_apps)


class CoreConfig(AppConfig):
    name = "ordermanager.core"
    label = "core"
    verbose_name = "Order manager core"

    def ready(self):
        # Sent once per app; keyed on this app so it runs once per migrate.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="core.roles_sync")
        admin_decimals_install()
        # Stays here: metrics_process reads the heartbeat model, which exists only once the apps are ready.
        from ordermanager.metrics_process import metrics_process_start_for_command

        metrics_process_start_for_command()  # qcluster's heartbeat (django-q2's command, not ours)
