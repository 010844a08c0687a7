"""How an acknowledgement is recorded (``order_executor._record_ack``): one fixed UPDATE whether or not the
stream got there first, the stream's state kept when it did, and the order's event written with the outcome's
other events in one outbox batch (docs/decisions/0325, 0335)."""

from decimal import Decimal as D
from unittest import mock

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from exchange.bybit.types import OrderAck
from ordermanager import events
from ordermanager.core.models import OutboxEvent
from orders.models import Order, OrderStatus
from orders.services.order_executor import order_submit
from signals_app.services.intake import signal_event_payload
from tests.orders.factories import OrderFactory
from tests.signals_app.factories import TradingSignalFactory

pytestmark = pytest.mark.django_db


def submit_acked(order: Order, settings, **kwargs) -> Order:
    settings.ENABLE_DRY_RUN = False
    client = mock.Mock()
    client.create_order.return_value = OrderAck(order_id="ex-1", order_link_id=order.order_link_id,
                                                resolved_existing=False)
    with mock.patch("exchange.bybit.client.get_client", return_value=client):
        return order_submit(order=order, **kwargs)


def test_a_pending_order_moves_to_new_with_its_order_id_and_submission_time(settings):
    order = OrderFactory(status=OrderStatus.PENDING_SUBMIT, order_id="")
    submit_acked(order, settings)
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.order_id) == (OrderStatus.NEW, "ex-1") == (order.status, order.order_id)
    assert stored.submitted_at == order.submitted_at and stored.submitted_at is not None
    assert stored.updated_at == stored.submitted_at


def test_a_fill_the_stream_applied_first_is_kept_and_the_order_id_still_recorded(settings):
    order = OrderFactory(status=OrderStatus.PENDING_SUBMIT, order_id="")
    # The private stream moved the row on (without the orderId) while the create was in flight.
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.FILLED, filled_qty=order.qty)
    submit_acked(order, settings, fresh=True)
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.order_id, stored.filled_qty) == (OrderStatus.FILLED, "ex-1", order.qty)
    # The caller's instance holds what is stored (the signal's outcome is decided on it).
    assert (order.status, order.order_id, order.filled_qty) == (OrderStatus.FILLED, "ex-1", order.qty)
    assert order.submitted_at is None


def test_the_acknowledgement_is_one_statement_on_the_order_whoever_came_first(settings):
    """The common case and the race alike: one UPDATE that returns the row (no second UPDATE, no re-read)."""
    for stream_first in (False, True):
        order = OrderFactory(status=OrderStatus.PENDING_SUBMIT, order_id="")
        if stream_first:
            Order.objects.filter(pk=order.pk).update(status=OrderStatus.FILLED, filled_qty=order.qty)
        with CaptureQueriesContext(connection) as queries:
            submit_acked(order, settings, fresh=True)
        on_orders = [q["sql"] for q in queries.captured_queries if Order._meta.db_table in q["sql"]]
        assert len(on_orders) == 1 and on_orders[0].startswith("UPDATE"), on_orders
        assert order.status == (OrderStatus.FILLED if stream_first else OrderStatus.NEW)


def test_an_order_id_the_stream_recorded_first_is_not_overwritten(settings):
    order = OrderFactory(status=OrderStatus.PENDING_SUBMIT, order_id="")
    Order.objects.filter(pk=order.pk).update(order_id="from-stream")
    submit_acked(order, settings, fresh=True)
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.order_id) == (OrderStatus.NEW, "from-stream")


def test_the_outcome_events_are_written_in_one_outbox_batch(settings):
    """The order's event and what the caller publishes in the outcome's transaction (the signal's end) take one
    sequence upsert and one insert, not one pair each."""
    order = OrderFactory(status=OrderStatus.PENDING_SUBMIT, order_id="", qty=D("1"))

    signal = TradingSignalFactory()

    def signal_ends(_order):
        events.publish_event_on_commit(routing_key=events.SIGNAL_EXECUTED, payload=signal_event_payload(signal))

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        submit_acked(order, settings, fresh=True, in_outcome_commit=signal_ends)
    statements = [q["sql"] for q in queries.captured_queries]
    assert sum("outboxsequence" in sql for sql in statements) == 1, statements
    assert sum("outboxevent" in sql for sql in statements) == 1, statements
    assert list(OutboxEvent.objects.order_by("id").values_list("routing_key", "sequence")) == [
        (events.ORDER_CREATED, 1), (events.SIGNAL_EXECUTED, 1)]
