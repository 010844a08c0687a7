from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, apps, using, **kwargs):
    # Keeps the role groups exact as apps add models (see ordermanager/core/roles.py).
    from ordermanager.core.roles import roles_sync

    if using == "default":
        roles_sync(apps=apps)


class CoreConfig(AppConfig):
    name = "ordermanager.core"
    label = "core"
    verbose_name = "Order manager core"

    def ready(self):
        # Sent once per app; keyed on this app so it runs once per migrate.
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="core.roles_sync")
