"""The book's answer to "which mode is this symbol in?" (fill ingest may not ask the exchange)."""

from decimal import Decimal as D

import pytest

from orders.services.position_mode import HEDGE, ONE_WAY, position_mode_in_book
from tests.orders.factories import OrderFactory
from tests.positions.factories import PositionFactory

pytestmark = pytest.mark.django_db

SYMBOL = "ETHUSDT"


def _modes() -> tuple[str | None, str | None]:
    """(best witness, certain) for SYMBOL."""
    return (
        position_mode_in_book(category="linear", symbol=SYMBOL),
        position_mode_in_book(category="linear", symbol=SYMBOL, certain=True),
    )


def test_nothing_in_the_book_tells_nothing():
    PositionFactory(symbol="BTCUSDT", position_idx=1)  # another symbol's row says nothing of this one
    assert _modes() == (None, None)


@pytest.mark.parametrize("idx,mode", [(0, ONE_WAY), (1, HEDGE), (2, HEDGE)])
def test_an_open_row_tells_the_mode_for_certain(idx, mode):
    PositionFactory(symbol=SYMBOL, position_idx=idx, size=D("0.5"))
    OrderFactory(symbol=SYMBOL, position_idx=0 if idx else 1)  # the open row outranks our latest order
    assert _modes() == (mode, mode)


def test_flat_rows_and_orders_are_a_best_guess_never_certain():
    PositionFactory(symbol=SYMBOL, position_idx=0, size=D("0"))
    assert _modes() == (ONE_WAY, None)
    PositionFactory(symbol=SYMBOL, position_idx=2, size=D("0"))
    assert _modes() == (HEDGE, None)  # hedge rows outrank a one-way row left from before a switch
    OrderFactory(symbol=SYMBOL, position_idx=1)
    OrderFactory(symbol=SYMBOL, position_idx=0)
    assert _modes() == (ONE_WAY, None)  # our latest order outranks any flat row


def test_open_rows_of_both_kinds_are_not_certain():
    # A broken book (a one-way row left open when the symbol went hedge): the fill of an unknown order
    # must wait for its order, while funding keeps the best witness it always had.
    PositionFactory(symbol=SYMBOL, position_idx=0, size=D("-0.5"))
    PositionFactory(symbol=SYMBOL, position_idx=1, size=D("0.5"))
    assert _modes() == (ONE_WAY, None)
