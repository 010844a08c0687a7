"""The Celery app object: the single home of the AMQP connection config.

We do not run Celery workers for signals (a worker discards the model
service's plain-JSON messages); ``consume_signals`` and the event publisher
use ``app.connection_for_write()`` from kombu with this config (``broker_connection``).
"""

import os

from celery import Celery
from kombu import Connection

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ordermanager.settings.base")

app = Celery("ordermanager")


def configure_from_settings() -> Celery:
    from django.conf import settings

    app.conf.broker_url = settings.SIGNAL_BROKER_URL or "memory://"
    app.conf.broker_heartbeat = 30
    app.conf.broker_connection_timeout = 5
    app.conf.broker_transport_options = {"confirm_publish": True}
    return app


def broker_connection(url: str | None = None, *, confirm_each: bool = True) -> Connection:
    """A kombu connection with the Celery app's broker settings (heartbeat, timeouts, confirms).

    ``confirm_each``: every publish waits for the broker's confirm. Off, the caller puts its channel in
    confirm mode and awaits the confirms of many messages at once (the outbox relay, ``PublisherConfirms``)."""
    app = configure_from_settings()
    options = {} if confirm_each else {"transport_options": {"confirm_publish": False}}
    return app.connection_for_write(url=url, **options) if url else app.connection_for_write(**options)
