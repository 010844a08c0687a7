"""Unmodified official clients (pybit, ccxt) work against the simulator over real HTTP."""

from decimal import Decimal

import ccxt
import pytest
from pybit.exceptions import InvalidRequestError
from pybit.unified_trading import HTTP


@pytest.fixture
def pybit_session(simulator):
    session = HTTP(api_key=simulator.api_key, api_secret=simulator.api_secret, testnet=False)
    session.endpoint = simulator.url
    return session


def test_pybit_places_lists_amends_cancels_and_reads_positions_and_wallet(pybit_session, simulator):
    placed = pybit_session.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit",
                                       qty="0.010", price="60000.0", orderLinkId="pybit-1")
    order_id = placed["result"]["orderId"]
    assert placed["retCode"] == 0 and placed["result"]["orderLinkId"] == "pybit-1"

    open_orders = pybit_session.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"]
    assert [(o["orderId"], o["orderStatus"], o["price"], o["qty"]) for o in open_orders] == [
        (order_id, "New", "60000.00", "0.010")]

    pybit_session.amend_order(category="linear", symbol="BTCUSDT", orderId=order_id, price="60100.5", qty="0.020")
    amended = pybit_session.get_open_orders(category="linear", orderLinkId="pybit-1")["result"]["list"][0]
    assert (amended["price"], amended["qty"]) == ("60100.50", "0.020")

    pybit_session.cancel_order(category="linear", symbol="BTCUSDT", orderLinkId="pybit-1")
    assert pybit_session.get_open_orders(category="linear", symbol="BTCUSDT")["result"]["list"] == []
    closed = pybit_session.get_open_orders(category="linear", orderLinkId="pybit-1")["result"]["list"][0]
    assert (closed["orderStatus"], closed["cancelType"]) == ("Cancelled", "CancelByUser")

    pybit_session.place_order(category="linear", symbol="ETHUSDT", side="Sell", orderType="Market", qty="0.50")
    positions = pybit_session.get_positions(category="linear", symbol="ETHUSDT")["result"]["list"]
    assert [(p["positionIdx"], p["side"], p["size"], p["avgPrice"]) for p in positions] == [
        (0, "Sell", "0.50", "3500.00")]

    wallet = pybit_session.get_wallet_balance(accountType="UNIFIED", coin="USDT")["result"]["list"][0]
    fee = Decimal("0.50") * Decimal("3500") * Decimal("0.00055")
    assert Decimal(wallet["totalWalletBalance"]) == Decimal("100000") - fee
    assert wallet["coin"][0]["coin"] == "USDT"


def test_pybit_raises_bybit_error_codes(pybit_session):
    with pytest.raises(InvalidRequestError) as err:
        pybit_session.cancel_order(category="linear", symbol="BTCUSDT", orderLinkId="never-placed")
    assert err.value.status_code == 110001


def test_pybit_follows_url_encoded_cursors(pybit_session, simulator):
    for i in range(5):
        pybit_session.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001",
                                  price=f"{50000 + i}.0", orderLinkId=f"page-{i}")
    seen, cursor = [], None
    while True:
        page = pybit_session.get_open_orders(category="linear", symbol="BTCUSDT", limit=2, cursor=cursor)["result"]
        seen += [o["orderLinkId"] for o in page["list"]]
        cursor = page["nextPageCursor"]
        if not cursor:
            break
        assert "%" in cursor  # Bybit-style encoded cursor, passed back verbatim and signed as sent
    assert seen == [f"page-{i}" for i in reversed(range(5))]


def test_ccxt_loads_markets_fetches_balance_and_trades(simulator):
    exchange = ccxt.bybit({"apiKey": simulator.api_key, "secret": simulator.api_secret, "enableRateLimit": False})
    exchange.urls["api"] = {name: simulator.url for name in exchange.urls["api"]}

    markets = exchange.load_markets()
    btc = markets["BTC/USDT:USDT"]
    assert btc["precision"]["amount"] == 0.001 and btc["precision"]["price"] == 0.1
    assert btc["limits"]["amount"]["min"] == 0.001 and btc["limits"]["amount"]["max"] == 1190
    assert {"ETH/USDT:USDT", "SOL/USDT:USDT", "XRP/USDT:USDT", "DOGE/USDT:USDT", "BTC/USDT"} <= set(markets)

    assert exchange.fetch_balance()["USDT"]["total"] == 100000

    limit = exchange.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, 60000, {"orderLinkId": "ccxt-1"})
    market = exchange.create_order("BTC/USDT:USDT", "market", "sell", 0.002)
    assert [o["id"] for o in exchange.fetch_open_orders("BTC/USDT:USDT")] == [limit["id"]]
    assert simulator.engine.orders[market["id"]].status == "Filled"
    position = exchange.fetch_positions(["BTC/USDT:USDT"])[0]
    assert (position["side"], position["contracts"]) == ("short", 0.002)
    exchange.cancel_order(limit["id"], "BTC/USDT:USDT")
    assert simulator.engine.orders[limit["id"]].status == "Cancelled"


def test_pybit_waits_out_10006_using_the_reset_header_and_succeeds(pybit_session, simulator):
    simulator.state.limiter.configure(limits={"/v5/order/create": 1})
    for i in range(3):  # two of three share a one-second window: 10006, pybit sleeps until the reset and retries
        pybit_session.place_order(category="linear", symbol="BTCUSDT", side="Buy", orderType="Limit", qty="0.001",
                                  price="60000.0", orderLinkId=f"rl-{i}")
    assert simulator.state.limiter.rejected >= 1
    assert sorted(o.order_link_id for o in simulator.engine.orders.values()) == ["rl-0", "rl-1", "rl-2"]
