from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from tests.positions.factories import PositionFactory, PositionSnapshotFactory

pytestmark = pytest.mark.django_db


def refused(**kwargs):
    with pytest.raises(IntegrityError), transaction.atomic():
        PositionFactory(**kwargs)


def test_one_row_per_symbol_and_position_index():
    PositionFactory(symbol="BTCUSDT", position_idx=1)

    refused(symbol="BTCUSDT", position_idx=1)


def test_hedge_mode_keeps_both_sides_of_a_symbol():
    long, short = PositionFactory(symbol="ETHUSDT", position_idx=1), PositionFactory(symbol="ETHUSDT", position_idx=2)

    assert long.pk != short.pk


def test_one_way_position_may_be_short_but_hedge_rows_are_unsigned():
    assert PositionFactory(position_idx=0, size=Decimal("-0.5")).size < 0

    refused(position_idx=2, size=Decimal("-0.5"))


@pytest.mark.parametrize("fields", [{"position_idx": 5}, {"avg_entry_price": Decimal("-1")}], ids=str)
def test_impossible_position_values_are_refused(fields):
    refused(**fields)


def test_snapshot_follows_its_position():
    snapshot = PositionSnapshotFactory()

    assert snapshot.position.snapshots.get() == snapshot
