"""The book's answer to "which mode is this symbol in?" (fill ingest may not ask the exchange), and the exchange's,
cached per process."""

from decimal import Decimal as D
from types import SimpleNamespace

import pytest
from structlog.testing import capture_logs

from ordermanager.core import ttl_cache
from orders.services import position_mode
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


# --- the exchange's answer, cached per process (one TTLCache entry per symbol: the mode and its listing) ------


class _Exchange:
    def __init__(self, *idxs):
        self.idxs, self.asked = list(idxs), 0

    def get_positions(self, *, category, symbol):
        self.asked += 1
        return [SimpleNamespace(position_idx=i) for i in self.idxs]


@pytest.fixture
def exchange(monkeypatch):
    """A fake position listing behind the client's own patch point, a clock under our hand, no cache left."""
    fake, now = _Exchange(0), [1000.0]
    monkeypatch.setattr("exchange.bybit.client.get_client", lambda: fake)
    monkeypatch.setattr(ttl_cache.time, "monotonic", lambda: now[0])  # the time module position_mode reads too
    position_mode.position_mode_forget()
    yield fake, now
    position_mode.position_mode_forget()


def test_the_mode_is_asked_once_per_ttl_and_a_forget_asks_again(exchange):
    fake, now = exchange
    assert position_mode.position_mode_of(category="linear", symbol=SYMBOL) == ONE_WAY
    fake.idxs = [1, 2]  # switched by a person while flat
    now[0] += position_mode.MODE_TTL_SECONDS - 0.001
    assert (position_mode.position_mode_of(category="linear", symbol=SYMBOL), fake.asked) == (ONE_WAY, 1)
    now[0] += 0.001
    assert (position_mode.position_mode_of(category="linear", symbol=SYMBOL), fake.asked) == (HEDGE, 2)

    fake.idxs = [0]
    position_mode.position_mode_forget(category="linear", symbol="BTCUSDT")  # another symbol: kept
    assert (position_mode.position_mode_of(category="linear", symbol=SYMBOL), fake.asked) == (HEDGE, 2)
    position_mode.position_mode_forget(symbol=SYMBOL)  # linear by default
    assert (position_mode.position_mode_of(category="linear", symbol=SYMBOL), fake.asked) == (ONE_WAY, 3)
    assert (position_mode.position_mode_of(category="spot", symbol=SYMBOL), fake.asked) == (ONE_WAY, 3)


def test_a_listing_read_at_or_after_since_is_reused_however_old_and_an_older_one_is_not(exchange):
    fake, now = exchange
    since = now[0]
    rows = position_mode.positions_read(category="linear", symbol=SYMBOL, since=since)
    now[0] += 10 * position_mode.MODE_TTL_SECONDS  # the mode expired; the listing still answers "since"
    assert position_mode.positions_read(category="linear", symbol=SYMBOL, since=since) is rows
    assert fake.asked == 1
    position_mode.positions_read(category="linear", symbol=SYMBOL, since=since + 0.001)
    assert fake.asked == 2
    position_mode.position_mode_forget()
    position_mode.positions_read(category="linear", symbol=SYMBOL, since=since)
    assert fake.asked == 3


def test_a_changed_mode_is_logged_even_after_the_old_answer_expired(exchange):
    fake, now = exchange
    position_mode.position_mode_of(category="linear", symbol=SYMBOL)
    fake.idxs, now[0] = [1, 2], now[0] + 3600
    with capture_logs() as logs:
        assert position_mode.position_mode_of(category="linear", symbol=SYMBOL) == HEDGE
    assert [(e["event"], e["was"], e["now"]) for e in logs] == [("position_mode_changed", ONE_WAY, HEDGE)]
