from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from tests.signals_app.factories import TradingSignalFactory

pytestmark = pytest.mark.django_db


def refused(**kwargs):
    with pytest.raises(IntegrityError), transaction.atomic():
        TradingSignalFactory(**kwargs)


def test_duplicate_signal_id_is_refused_by_the_database():
    signal = TradingSignalFactory()

    refused(signal_id=signal.signal_id)


@pytest.mark.parametrize(
    "fields",
    [
        {"amount": Decimal("0")},
        {"amount": Decimal("-100")},
        {"confidence": Decimal("1.01")},
        {"confidence": Decimal("-0.01")},
        {"status": "lost"},
    ],
    ids=str,
)
def test_impossible_signal_values_are_refused(fields):
    refused(**fields)


def test_rejected_signal_may_lack_amount_and_confidence():
    signal = TradingSignalFactory(amount=None, confidence=None, status="rejected", reason="amount: missing")

    assert signal.pk is not None


def test_arrival_sequence_follows_insertion_order():
    first, second = TradingSignalFactory(), TradingSignalFactory()

    assert first.pk < second.pk
