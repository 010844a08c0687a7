"""Orders admin: the "Cancel on exchange" action through the real changelist URL, against the simulator."""

from decimal import Decimal

import pytest
from django.contrib.admin import helpers
from django.contrib.admin.models import LogEntry

from orders.admin import CANCEL_REPORT
from orders.models import CancelReason, OrderStatus
from orders.services.cancellation import CancelResult
from tests.orders.factories import OrderFactory

pytestmark = pytest.mark.django_db
URL = "/admin/orders/order/"


def _post(client, orders, **extra):
    data = {"action": "cancel_on_exchange", helpers.ACTION_CHECKBOX_NAME: [o.pk for o in orders], **extra}
    return client.post(URL, data)


@pytest.fixture
def resting_order(bybit_settings):
    """A real limit order resting on the simulator, and our row for it."""
    from exchange.bybit.client import get_client

    link = "om-admin-cancel-0001"
    ack = get_client().create_order(
        category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=Decimal("0.01"),
        price=Decimal("1000"), time_in_force="GTC", order_link_id=link,
    )  # fmt: skip
    return OrderFactory(order_link_id=link, order_id=ack.order_id, price=Decimal("1000"), qty=Decimal("0.01"),
                        time_in_force="GTC", post_only=False, status=OrderStatus.NEW)  # fmt: skip


def test_first_post_shows_exactly_what_will_be_cancelled_and_asks_why(client, risk_staff):
    open_order = OrderFactory(status=OrderStatus.NEW)
    filled = OrderFactory(status=OrderStatus.FILLED, filled_qty=Decimal("0.010"))
    client.force_login(risk_staff)
    response = _post(client, [open_order, filled])
    assert response.status_code == 200
    assert response.templates[0].name == "admin/orders/order/cancel_confirmation.html"
    assert [o.pk for o in response.context["cancellable"]] == [open_order.pk]
    assert [o.pk for o in response.context["skipped"]] == [filled.pk]
    content = response.content.decode()
    assert f'name="{helpers.ACTION_CHECKBOX_NAME}" value="{open_order.pk}"' in content
    assert 'name="post" value="yes"' in content and 'name="reason"' in content
    open_order.refresh_from_db()
    assert open_order.status == OrderStatus.NEW  # nothing happened yet


def test_confirming_without_a_reason_changes_nothing(client, risk_staff):
    order = OrderFactory(status=OrderStatus.NEW)
    client.force_login(risk_staff)
    response = _post(client, [order], post="yes", reason="")
    assert response.templates[0].name == "admin/orders/order/cancel_confirmation.html"
    assert response.context["form"].errors["reason"]
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW and order.cancelled_by is None


def test_confirming_cancels_on_the_simulator_and_records_reason_and_user(client, risk_staff, resting_order, simulator):
    from exchange.bybit.client import get_client

    client.force_login(risk_staff)
    response = _post(client, [resting_order], post="yes", reason="runaway model")
    assert response.templates[0].name == "admin/orders/order/cancel_result.html"
    (row,) = response.context["rows"]
    assert row["result"] == "cancelled", row
    on_exchange = get_client().get_order(category="linear", symbol="BTCUSDT", order_link_id=resting_order.order_link_id)
    assert on_exchange.order_status == "Cancelled"
    resting_order.refresh_from_db()
    assert resting_order.cancel_reason == CancelReason.MANUAL
    assert resting_order.cancel_note == "runaway model"
    assert resting_order.cancelled_by == risk_staff
    log = LogEntry.objects.get(object_id=str(resting_order.pk))
    assert log.user == risk_staff and "runaway model" in log.change_message


def test_an_order_already_filled_on_the_exchange_is_reported_as_such(client, risk_staff, bybit_settings, simulator):
    order = OrderFactory(order_link_id="om-admin-gone-0001", status=OrderStatus.NEW)  # unknown to the exchange
    client.force_login(risk_staff)
    response = _post(client, [order], post="yes", reason="cleanup")
    (row,) = response.context["rows"]
    assert row["result"] in ("already_closed", "error")
    assert row["message"]  # retMsg from the exchange, shown to the person


def test_without_the_permission_the_action_is_absent_and_refused(client, readonly_staff):
    order = OrderFactory(status=OrderStatus.NEW)
    client.force_login(readonly_staff)
    page = client.get(URL)
    assert "cancel_on_exchange" not in page.content.decode()
    response = _post(client, [order], post="yes", reason="x")
    assert response.status_code in (200, 302, 403)
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW and order.cancelled_by is None


def test_search_finds_by_order_link_id_exchange_id_and_signal_id(client, readonly_staff):
    from tests.orders.factories import SignalOrderRelationshipFactory

    link = SignalOrderRelationshipFactory()
    other = OrderFactory()
    client.force_login(readonly_staff)
    for term in (link.order.order_link_id, link.order.order_id, str(link.signal.signal_id)):
        result = list(client.get(URL, {"q": term}).context["cl"].result_list)
        assert [o.pk for o in result] == [link.order.pk], term
    assert other.order_link_id not in client.get(URL, {"q": link.order.order_link_id}).content.decode()


def test_orders_are_never_edited_by_hand(client, risk_admin):
    order = OrderFactory()
    client.force_login(risk_admin)
    response = client.post(f"{URL}{order.pk}/change/", {"status": "filled"})
    assert response.status_code == 403


def test_execution_search_finds_by_exec_id_exchange_order_id_and_order_link_id(client, readonly_staff):
    from tests.orders.factories import ExecutionFactory

    order = OrderFactory(order_id="ex-order-1")
    mine = [ExecutionFactory(order=order, exchange_order_id="ex-order-1") for _ in range(2)]
    ExecutionFactory()  # someone else's fill
    client.force_login(readonly_staff)
    url = "/admin/orders/execution/"
    for term, expected in ((order.order_link_id, mine), ("ex-order-1", mine), (mine[0].exec_id, mine[:1])):
        result = client.get(url, {"q": term}).context["cl"].result_list
        assert {e.pk for e in result} == {e.pk for e in expected}, term
    assert list(client.get(url, {"q": "no-such-thing"}).context["cl"].result_list) == []


def test_a_big_table_says_its_count_is_capped(client, readonly_staff, monkeypatch):
    from ordermanager.core import admin_tools

    monkeypatch.setattr(admin_tools, "CAP", 3)
    orders = OrderFactory.create_batch(4)
    client.force_login(readonly_staff)
    assert "3+ orders" in client.get(URL).content.decode()
    one = client.get(URL, {"q": orders[0].order_link_id}).content.decode()
    assert "1 order" in one and "+ order" not in one


def test_open_orders_link_lists_every_active_status_and_nothing_else(client, readonly_staff):
    active = [OrderFactory(status=s) for s in ("pending_submit", "new", "partially_filled", "pending_cancel")]
    OrderFactory(status=OrderStatus.FILLED)
    OrderFactory(status=OrderStatus.CANCELLED)
    client.force_login(readonly_staff)
    index = client.get("/admin/").content.decode()
    href = index.split('id="open-orders-link" href="')[1].split('"')[0].replace("&amp;", "&")
    result = client.get(href).context["cl"].result_list
    assert {o.pk for o in result} == {o.pk for o in active}


def test_cancel_from_the_order_page_confirms_then_cancels_on_the_exchange(client, risk_staff, resting_order):
    client.force_login(risk_staff)
    page = client.get(f"{URL}{resting_order.pk}/change/").content.decode()
    assert 'id="cancel-on-exchange"' in page
    confirm = client.get(f"{URL}{resting_order.pk}/cancel/")
    assert confirm.status_code == 200 and resting_order.order_link_id in confirm.content.decode()
    resting_order.refresh_from_db()
    assert resting_order.status == OrderStatus.NEW  # nothing sent before the confirmation
    done = client.post(f"{URL}{resting_order.pk}/cancel/", {
        "action": "cancel_on_exchange", helpers.ACTION_CHECKBOX_NAME: [resting_order.pk], "post": "yes",
        "reason": "fat finger",
    })  # fmt: skip
    assert "Cancel accepted by the exchange" in done.content.decode()
    resting_order.refresh_from_db()
    assert resting_order.cancel_note == "fat finger" and resting_order.cancelled_by == risk_staff


def test_the_order_page_offers_no_cancel_to_a_viewer_or_for_a_closed_order(client, readonly_staff, risk_staff):
    closed = OrderFactory(status=OrderStatus.FILLED)
    open_ = OrderFactory(status=OrderStatus.NEW)
    client.force_login(readonly_staff)
    assert 'id="cancel-on-exchange"' not in client.get(f"{URL}{open_.pk}/change/").content.decode()
    assert client.get(f"{URL}{open_.pk}/cancel/").status_code == 403
    client.force_login(risk_staff)
    assert 'id="cancel-on-exchange"' not in client.get(f"{URL}{closed.pk}/change/").content.decode()
    assert client.get(f"{URL}999999/cancel/").status_code == 404


def test_every_cancel_result_has_a_line_in_the_admin_report():
    assert set(CANCEL_REPORT) == set(CancelResult)
