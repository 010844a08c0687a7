from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from exchange.models import Instrument
from tests.exchange.factories import ExchangeCallFactory, InstrumentFactory

pytestmark = pytest.mark.django_db


def test_one_instrument_row_per_category_and_symbol():
    instrument = InstrumentFactory()

    with pytest.raises(IntegrityError), transaction.atomic():
        Instrument.objects.create(
            category=instrument.category,
            symbol=instrument.symbol,
            tick_size=Decimal("0.1"),
            qty_step=Decimal("0.001"),
            min_order_qty=Decimal("0.001"),
            max_order_qty=Decimal("100"),
            fetched_at=instrument.fetched_at,
        )


@pytest.mark.parametrize("fields", [{"tick_size": Decimal("0")}, {"qty_step": Decimal("-0.001")}], ids=str)
def test_instrument_steps_must_be_positive(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        InstrumentFactory(symbol="ZZZUSDT", **fields)


def test_exchange_call_attempt_starts_at_one():
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeCallFactory(attempt=0)
