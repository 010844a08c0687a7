from decimal import Decimal

import factory
from django.utils import timezone

from orders.models import (
    Discrepancy,
    Execution,
    Order,
    OrderStatus,
    OrderType,
    ReconciliationRun,
    RiskLimit,
    SignalOrderRelationship,
)
from tests.signals_app.factories import TradingSignalFactory


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    order_link_id = factory.Sequence(lambda n: f"om-test-{n:08d}")
    order_id = factory.Sequence(lambda n: f"sim-{n:012d}")
    symbol = "BTCUSDT"
    side = "Buy"
    order_type = OrderType.LIMIT
    time_in_force = "PostOnly"
    post_only = True
    qty = Decimal("0.010")
    price = Decimal("64000.0")
    status = OrderStatus.NEW


class SignalOrderRelationshipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SignalOrderRelationship

    signal = factory.SubFactory(TradingSignalFactory)
    order = factory.SubFactory(OrderFactory)
    allocation_amount = Decimal("640")


class ExecutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Execution

    exec_id = factory.Sequence(lambda n: f"exec-{n:010d}")
    order = factory.SubFactory(OrderFactory)
    exchange_order_id = factory.LazyAttribute(lambda o: o.order.order_id if o.order else "")
    order_link_id = factory.LazyAttribute(lambda o: o.order.order_link_id if o.order else "")
    symbol = factory.LazyAttribute(lambda o: o.order.symbol if o.order else "BTCUSDT")
    side = "Buy"
    exec_type = "Trade"
    exec_qty = Decimal("0.010")
    exec_price = Decimal("64000.0")
    exec_value = Decimal("640.0")
    exec_fee = Decimal("0.352")
    fee_currency = "USDT"
    exec_time = factory.LazyFunction(timezone.now)


class RiskLimitFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RiskLimit
        django_get_or_create = ("symbol",)

    symbol = ""
    max_position_size = None  # base units: no limit
    max_position_value = Decimal("50000")
    max_exposure = Decimal("200000")
    max_order_size_ratio = Decimal("0.5")


class ReconciliationRunFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReconciliationRun

    trigger = ReconciliationRun.Trigger.COMMAND


class DiscrepancyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Discrepancy

    run = factory.SubFactory(ReconciliationRunFactory)
    kind = "order_status"
    symbol = "BTCUSDT"
