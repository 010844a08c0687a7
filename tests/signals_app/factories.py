import uuid
from decimal import Decimal

import factory
from django.utils import timezone

from signals_app.models import SignalStatus, TradingSignal


class TradingSignalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TradingSignal

    signal_id = factory.LazyFunction(uuid.uuid4)
    signal_type = "buy"
    asset = "BTCUSDT"
    amount = Decimal("100")
    confidence = Decimal("0.7")
    strategy_id = "momentum_v1"
    signal_timestamp = factory.LazyFunction(timezone.now)
    snapshot_price = Decimal("64250.5")
    snapshot_spread = Decimal("1.5")
    raw_payload = factory.LazyAttribute(
        lambda o: {"signal_id": str(o.signal_id), "signal_type": o.signal_type, "asset": o.asset}
    )
    trace_id = factory.Faker("hexify", text="^^^^^^^^^^^^^^^^")
    source = "api"
    status = SignalStatus.RECEIVED
