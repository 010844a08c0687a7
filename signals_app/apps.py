from django.apps import AppConfig


class SignalsAppConfig(AppConfig):
    name = "signals_app"
    verbose_name = "Signals"

    def ready(self) -> None:
        # orders asks the inbox about a held order's signal through this (docs/decisions/0323); imported here
        # because services import models, which must wait for the app registry.
        from orders.services.order_holds import held_signals_register
        from signals_app.services.signal_outcome import HeldSignalsOfInbox

        held_signals_register(HeldSignalsOfInbox())
