from django.apps import AppConfig


class OpsConfig(AppConfig):
    """An app only so that its management commands (bootstrap, setup_schedules) are found; it has no models."""

    name = "ordermanager.ops"
    label = "ops"
    verbose_name = "Order manager operations"
