"""The two staff roles, defined in code and synced to auth groups.

Risk staff edit risk limits and the trading halt, cancel orders and run
reconciliation, and see everything else read-only. Viewers only look.
Superusers are not a group. Nobody but a superuser sees API keys.

``roles_sync`` makes each group hold exactly these permissions. It runs from
the roles migration and again after every ``migrate`` (see CoreConfig.ready),
so a model added later by another app gets its view permission too, and a
permission granted by hand in the admin does not silently widen a role.
"""

from __future__ import annotations

RISK_STAFF = "Risk staff"
VIEWER = "Viewer"

# Every model of these apps is viewable by both roles ...
VIEWABLE_APPS = ("orders", "positions", "signals_app", "exchange", "core", "django_q")
# ... except these, which hold credentials or their digests.
HIDDEN_MODELS = frozenset({"core.apikey"})

RISK_STAFF_EXTRA = (
    "orders.add_risklimit",  # a per-symbol override is how a limit is tightened for one symbol
    "orders.change_risklimit",
    "orders.cancel_order",
    "orders.run_reconciliation",
)


def _ensure_permissions(apps) -> None:
    # In a fresh database permissions are created by post_migrate, i.e. after
    # this migration; create them now so the groups can refer to them.
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        if app_config.label not in VIEWABLE_APPS:
            continue
        had_module = getattr(app_config, "models_module", None)
        app_config.models_module = had_module or True  # historical app configs have none
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = had_module


def _view_permissions(permission_model):
    perms = permission_model.objects.filter(
        content_type__app_label__in=VIEWABLE_APPS, codename__startswith="view_"
    ).select_related("content_type")
    return [p for p in perms if f"{p.content_type.app_label}.{p.content_type.model}" not in HIDDEN_MODELS]


def _by_label(permission_model, labels) -> list:
    found = []
    for label in labels:
        app_label, codename = label.split(".", 1)
        found.extend(permission_model.objects.filter(content_type__app_label=app_label, codename=codename))
    return found


def roles_sync(*, apps) -> None:
    """Create/refresh both groups with exactly their permissions (idempotent)."""
    _ensure_permissions(apps)
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    view = _view_permissions(permission_model)
    wanted = {VIEWER: view, RISK_STAFF: view + _by_label(permission_model, RISK_STAFF_EXTRA)}
    for name, permissions in wanted.items():
        group, _ = group_model.objects.get_or_create(name=name)
        group.permissions.set(permissions)
