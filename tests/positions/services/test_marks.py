"""Marks on the database: unrealized PnL, loss warnings (once per crossing), snapshots."""

from decimal import Decimal as D
from unittest import mock

import pytest

from ordermanager.events import POSITION_LOSS_WARNING
from positions.models import Position, PositionSnapshot
from positions.services.marks import (
    position_set_mark_price,
    position_snapshot_all,
    positions_check_loss_warnings,
)
from tests.positions.services.test_ledger import fill

pytestmark = pytest.mark.django_db


@pytest.fixture
def events():
    # The boundary: what the service hands to the publisher (which sends after commit).
    # Both modules publish (position.updated from the ledger, position.loss_warning from marks): one mock for both.
    with mock.patch("positions.services.marks.publish_event_on_commit", autospec=True) as publish:
        with mock.patch("positions.services.ledger.publish_event_on_commit", new=publish):
            yield publish


def _keys(publish) -> list[str]:
    return [call.kwargs["routing_key"] for call in publish.call_args_list]


def test_mark_price_sets_unrealized_and_loss_warning_fires_once_per_crossing(settings, events):
    settings.UNREALIZED_LOSS_WARNING_THRESHOLD = D("10")
    fill("Buy", "1", "100", ms=1)

    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("85"))  # -15 %
    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("80"))  # still beyond: no repeat
    position = Position.objects.get()
    assert (position.unrealized_pnl, position.loss_warning_active) == (D("-20"), True)
    assert _keys(events).count(POSITION_LOSS_WARNING) == 1

    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("95"))  # recovers: re-armed
    position_set_mark_price(category="linear", symbol="BTCUSDT", mark_price=D("89"))  # -11 %: warns again
    assert _keys(events).count(POSITION_LOSS_WARNING) == 2
    warning = [c.kwargs["payload"] for c in events.call_args_list if c.kwargs["routing_key"] == POSITION_LOSS_WARNING][
        -1
    ]
    assert (warning["loss_percent"], warning["symbol"], warning["unrealized_pnl"]) == ("11.00", "BTCUSDT", D("-11"))


def test_short_loss_and_the_scheduled_check(settings, events):
    settings.UNREALIZED_LOSS_WARNING_THRESHOLD = D("5")
    fill("Sell", "2", "100", ms=1)
    Position.objects.update(mark_price=D("110"), unrealized_pnl=D("-20"))  # as left by an earlier mark update
    assert positions_check_loss_warnings() == 1
    assert positions_check_loss_warnings() == 0


def test_snapshot_of_every_position():
    fill("Buy", "1", "100", ms=1)
    fill("Sell", "1", "100", ms=2, symbol="ETHUSDT")
    assert position_snapshot_all() == 2
    snap = PositionSnapshot.objects.get(position__symbol="BTCUSDT")
    assert (snap.size, snap.avg_entry_price) == (D("1"), D("100"))
