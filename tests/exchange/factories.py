from decimal import Decimal

import factory
from django.utils import timezone

from exchange.models import ExchangeCall, Instrument


class InstrumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instrument
        django_get_or_create = ("category", "symbol")

    category = "linear"
    symbol = "BTCUSDT"
    base_coin = "BTC"
    quote_coin = "USDT"
    tick_size = Decimal("0.10")
    qty_step = Decimal("0.001")
    min_order_qty = Decimal("0.001")
    max_order_qty = Decimal("1190")
    max_market_order_qty = Decimal("500")
    min_notional = Decimal("5")
    fetched_at = factory.LazyFunction(timezone.now)


class ExchangeCallFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExchangeCall

    method = "POST"
    path = "/v5/order/create"
    params = factory.LazyFunction(lambda: {"symbol": "BTCUSDT"})
    http_status = 200
    ret_code = 0
    ret_msg = "OK"
    latency_ms = 3
