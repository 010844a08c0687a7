from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "ordermanager.core"
    label = "core"
    verbose_name = "Order manager core"
