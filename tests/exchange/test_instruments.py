"""Instrument rules: memory TTL → Instrument table → the exchange (the simulator over HTTP)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from exchange.bybit.client import get_client
from exchange.bybit.errors import BybitConnectError
from exchange.instruments import UnknownInstrument, instrument_get, instruments_cache_clear, instruments_refresh
from exchange.models import ExchangeCall, Instrument

pytestmark = pytest.mark.django_db
INFO_PATH = "/v5/market/instruments-info"


@pytest.fixture(autouse=True)
def _fresh_memory():
    instruments_cache_clear()
    yield
    instruments_cache_clear()


def fetches() -> int:
    return ExchangeCall.objects.filter(path=INFO_PATH).count()


def test_first_get_fetches_and_stores(bybit_settings):
    info = instrument_get(category="linear", symbol="BTCUSDT")
    assert (info.tick_size, info.qty_step, info.min_order_qty, info.min_notional) == (
        Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal("5")
    )  # fmt: skip
    row = Instrument.objects.get(category="linear", symbol="BTCUSDT")
    assert (row.tick_size, row.qty_step, row.max_order_qty, row.max_market_order_qty) == (
        Decimal("0.10"), Decimal("0.001"), Decimal("1190"), Decimal("500")
    )  # fmt: skip
    assert fetches() == 1


def test_memory_then_table_then_exchange(bybit_settings):
    instrument_get(category="linear", symbol="ETHUSDT")
    instrument_get(category="linear", symbol="ETHUSDT")
    assert fetches() == 1  # memory
    instruments_cache_clear()
    info = instrument_get(category="linear", symbol="ETHUSDT")
    assert fetches() == 1 and info.qty_step == Decimal("0.01")  # table row still fresh
    instruments_cache_clear()
    Instrument.objects.filter(symbol="ETHUSDT").update(fetched_at=timezone.now() - timedelta(days=2))
    instrument_get(category="linear", symbol="ETHUSDT")
    assert fetches() == 2  # stale row: asked the exchange again
    assert timezone.now() - Instrument.objects.get(symbol="ETHUSDT").fetched_at < timedelta(minutes=1)


def test_refresh_skips_the_caches(bybit_settings):
    instrument_get(category="linear", symbol="SOLUSDT")
    instrument_get(category="linear", symbol="SOLUSDT", refresh=True)
    assert fetches() == 2


def test_memory_ttl_expires(bybit_settings):
    bybit_settings.INSTRUMENT_CACHE_TTL = 0
    instrument_get(category="linear", symbol="XRPUSDT")
    instrument_get(category="linear", symbol="XRPUSDT")
    assert fetches() == 2


def test_unknown_symbol_is_a_clear_error_and_stores_nothing(bybit_settings):
    with pytest.raises(UnknownInstrument, match="'NOPEUSDT' is not listed"):
        instrument_get(category="linear", symbol="NOPEUSDT")
    assert isinstance(UnknownInstrument("x"), ValueError)
    assert not Instrument.objects.exists()


def test_refresh_all_upserts_every_instrument(bybit_settings):
    Instrument.objects.create(category="linear", symbol="BTCUSDT", tick_size=Decimal("1"), qty_step=Decimal("1"),
                              min_order_qty=Decimal("1"), max_order_qty=Decimal("1"),
                              fetched_at=timezone.now() - timedelta(days=9))  # fmt: skip
    count = instruments_refresh(category="linear")
    assert count == Instrument.objects.filter(category="linear").count() >= 5
    assert Instrument.objects.get(symbol="BTCUSDT").tick_size == Decimal("0.10")  # updated in place
    assert instrument_get(category="linear", symbol="DOGEUSDT").tick_size == Decimal("0.00001")
    assert fetches() == 1  # the refresh also filled memory


def test_stale_row_is_served_when_the_exchange_is_unreachable(bybit_settings, simulator):
    instrument_get(category="linear", symbol="BTCUSDT")
    instruments_cache_clear()
    Instrument.objects.filter(symbol="BTCUSDT").update(fetched_at=timezone.now() - timedelta(days=2))
    bybit_settings.BYBIT_BASE_URL = "http://127.0.0.1:9"  # nothing listens on the discard port
    bybit_settings.BYBIT_API_RETRY_MAX_ATTEMPTS = 1
    get_client.cache_clear()
    assert instrument_get(category="linear", symbol="BTCUSDT").tick_size == Decimal("0.10")
    with pytest.raises(BybitConnectError):
        instrument_get(category="linear", symbol="ETHUSDT")  # no row to fall back on
