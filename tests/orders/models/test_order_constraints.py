"""The database itself refuses impossible orders, executions and limits."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from orders.models import STATUS_RANK, TERMINAL_STATUSES, Order, OrderStatus
from tests.orders.factories import (
    DiscrepancyFactory,
    ExecutionFactory,
    OrderFactory,
    RiskLimitFactory,
    SignalOrderRelationshipFactory,
)

pytestmark = pytest.mark.django_db


def refused(factory, **kwargs):
    with pytest.raises(IntegrityError), transaction.atomic():
        factory(**kwargs)


def test_order_link_id_is_unique():
    OrderFactory(order_link_id="om-abc-0")

    refused(OrderFactory, order_link_id="om-abc-0")


@pytest.mark.parametrize(
    "fields",
    [
        {"qty": Decimal("0")},
        {"qty": Decimal("-1")},
        {"filled_qty": Decimal("-0.001")},
        {"qty": Decimal("1"), "filled_qty": Decimal("1.001")},
        {"price": Decimal("0")},
        {"position_idx": 3},
        {"status": "exploded"},
        {"side": "Hold"},
        {"order_type": "Limit", "price": None},
    ],
    ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()),
)
def test_impossible_order_values_are_refused(fields):
    refused(OrderFactory, **fields)


def test_market_order_may_have_no_price():
    order = OrderFactory(order_type="Market", price=None, time_in_force="IOC", post_only=False)

    assert Order.objects.get(pk=order.pk).price is None


def test_filled_equal_to_qty_is_allowed():
    order = OrderFactory(qty=Decimal("0.5"), filled_qty=Decimal("0.5"), status=OrderStatus.FILLED)

    assert order.filled_qty == order.qty


def test_exec_id_is_unique():
    ExecutionFactory(exec_id="e-1")

    refused(ExecutionFactory, exec_id="e-1")


def test_negative_execution_qty_is_refused():
    refused(ExecutionFactory, exec_qty=Decimal("-0.1"))


def test_signal_order_pair_is_unique_and_allocation_positive():
    link = SignalOrderRelationshipFactory()

    refused(SignalOrderRelationshipFactory, signal=link.signal, order=link.order)
    refused(SignalOrderRelationshipFactory, allocation_amount=Decimal("0"))


def test_one_risk_limit_row_per_symbol():
    RiskLimitFactory(symbol="BTCUSDT")

    with pytest.raises(IntegrityError), transaction.atomic():
        from orders.models import RiskLimit

        RiskLimit.objects.create(
            symbol="BTCUSDT", max_position_size=1, max_exposure=1, max_order_size_ratio=Decimal("0.1")
        )


@pytest.mark.parametrize(
    "fields",
    [
        {"max_position_size": Decimal("-1")},
        {"max_exposure": Decimal("-1")},
        {"max_order_size_ratio": Decimal("1.5")},
        {"max_order_size_ratio": Decimal("-0.1")},
    ],
    ids=str,
)
def test_negative_limits_and_ratios_outside_0_1_are_refused(fields):
    refused(RiskLimitFactory, symbol="ETHUSDT", **fields)


def test_discrepancy_belongs_to_a_run():
    discrepancy = DiscrepancyFactory()

    assert discrepancy.run.discrepancies.get() == discrepancy


def test_terminal_states_outrank_every_active_state():
    active_top = max(rank for status, rank in STATUS_RANK.items() if status not in TERMINAL_STATUSES)

    assert all(STATUS_RANK[status] > active_top for status in TERMINAL_STATUSES)
    assert set(STATUS_RANK) == set(OrderStatus)


@pytest.mark.postgres
def test_money_keeps_more_than_fifteen_significant_digits_on_postgres():
    # SQLite keeps ~15 significant digits; PostgreSQL NUMERIC(36,18) keeps all of them.
    price = Decimal("123456789012.123456789012345678")
    order = OrderFactory(price=price)

    assert Order.objects.get(pk=order.pk).price == price
