"""How a failed create is recorded: `rejected` when the exchange judged the order, `failed` otherwise.
The happy paths run against the simulator in tests/signals_app/services/test_signal_processor.py."""

from unittest import mock

import pytest

from exchange.bybit import errors as E
from orders.models import OrderStatus
from orders.services.order_executor import order_submit
from tests.orders.factories import OrderFactory

pytestmark = pytest.mark.django_db


def submit_failing_with(exc: E.BybitError, settings):
    settings.ENABLE_DRY_RUN = False
    order = OrderFactory(status=OrderStatus.PENDING_SUBMIT, order_id="")
    client = mock.Mock()
    client.create_order.side_effect = exc
    with mock.patch("exchange.bybit.client.get_client", return_value=client):
        return order_submit(order=order)


@pytest.mark.parametrize(("cls", "ret_code"), [
    (E.BybitInsufficientBalanceError, 110007), (E.BybitInvalidRequestError, 10001), (E.BybitError, 123456),
    (E.BybitBusyError, 110079),
], ids=lambda v: getattr(v, "__name__", str(v)))  # fmt: skip
def test_a_refusal_with_a_ret_code_rejects_the_order(settings, cls, ret_code):
    order = submit_failing_with(cls("no", ret_code=ret_code, ret_msg="no"), settings)
    assert (order.status, order.reject_code, order.reject_reason) == (OrderStatus.REJECTED, ret_code, "no")


@pytest.mark.parametrize(("cls", "ret_code"), [
    (E.BybitRateLimitError, 10006), (E.BybitAuthError, 10003), (E.BybitTimestampError, 10002),
    (E.BybitConnectError, None), (E.BybitInvalidRequestError, None),
], ids=lambda v: getattr(v, "__name__", str(v)))  # fmt: skip
def test_throttling_credentials_clock_or_no_ret_code_fail_the_order(settings, cls, ret_code):
    order = submit_failing_with(cls("not judged", ret_code=ret_code), settings)
    assert (order.status, order.reject_code) == (OrderStatus.FAILED, ret_code)


def test_an_ambiguous_error_leaves_the_order_pending(settings):
    order = submit_failing_with(E.BybitServerError("timed out", ret_code=10000), settings)
    assert order.status == OrderStatus.PENDING_SUBMIT


def test_the_signal_id_is_read_back_from_an_order_link_id_of_a_signal():
    import uuid

    from orders.services.order_executor import order_link_id_for, signal_id_of_link

    signal_id = uuid.uuid4()
    assert signal_id_of_link(order_link_id_for(signal_id=signal_id, leg=12)) == signal_id
    assert signal_id_of_link("manual-order-1") is None and signal_id_of_link(f"{signal_id.hex}-x") is None
