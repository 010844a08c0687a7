"""Listing more linear instruments: POST /sim/instruments, engine.add_instruments, build_app/SimulatorServer
``extra_instruments``, and what a reset keeps (construction-time instruments) and drops (run-time ones)."""

from decimal import Decimal as D

import pytest
from starlette.testclient import TestClient

from exchange.simulator.app import build_app
from exchange.simulator.engine import SimEngine
from exchange.simulator.instruments import LINEAR, InstrumentDefinitionError, linear_spec_from_definition

COMPACT = {"symbol": "S01USDT", "price": "100.00", "tickSize": "0.01", "qtyStep": "0.01", "minOrderQty": "0.01",
           "maxOrderQty": "100000", "maxMktOrderQty": "10000", "minNotionalValue": "5"}


def instruments_info(http, **params) -> list[dict]:
    answer = http.get("/v5/market/instruments-info", category="linear", **params)
    assert answer["retCode"] == 0, answer
    return answer["result"]["list"]


def test_added_instrument_is_listed_quoted_and_tradable_until_reset(http, simulator):
    response = http.client.post("/sim/instruments", json=[COMPACT, {**COMPACT, "symbol": "S02USDT", "price": "7.5"}])
    assert response.status_code == 200, response.text
    [s01, s02] = response.json()["list"]
    assert (s01["symbol"], s01["priceFilter"]["tickSize"], s01["lotSizeFilter"]["maxMktOrderQty"]) == (
        "S01USDT", "0.01", "10000")
    assert s01["baseCoin"] == "S01" and s02["symbolId"] == s01["symbolId"] + 1

    listed = [i["symbol"] for i in instruments_info(http)]
    assert listed == [*LINEAR, "S01USDT", "S02USDT"]  # built-ins first (symbolId order), then the additions
    [ticker] = http.get("/v5/market/tickers", category="linear", symbol="S02USDT")["result"]["list"]
    assert ticker["lastPrice"] == "7.50"

    ack = http.order(symbol="S01USDT", orderType="Market", price=None, qty="0.50", orderLinkId="s01-mkt")
    assert ack["retCode"] == 0, ack
    [position] = http.get("/v5/position/list", category="linear", symbol="S01USDT")["result"]["list"]
    assert (position["side"], position["size"], position["avgPrice"]) == ("Buy", "0.50", "100.00")
    assert http.order(symbol="S01USDT", qty="0.005", price="90.00")["retCode"] == 10001  # its qtyStep applies
    assert http.order(symbol="S01USDT", qty="0.01", price="90.00")["retCode"] == 110094  # and its min notional

    http.control("/sim/reset")
    assert [i["symbol"] for i in instruments_info(http)] == list(LINEAR)
    assert http.order(symbol="S01USDT", qty="1.00", price="90.00")["retMsg"] == "params error: symbol invalid"


def test_bybit_shaped_items_and_instruments_info_results_are_accepted(http, simulator):
    [btc] = instruments_info(http, symbol="BTCUSDT")
    item = {**btc, "symbol": "BTC2USDT", "baseCoin": "BTC2", "price": "65000.00"}
    item.pop("symbolId")
    answer = http.control("/sim/instruments", {"list": [item]})  # a pasted instruments-info ``result``
    [listed] = instruments_info(http, symbol="BTC2USDT")
    assert listed["lotSizeFilter"] == btc["lotSizeFilter"] and listed["priceFilter"] == btc["priceFilter"]
    assert answer["list"] == [listed]
    again = http.client.post("/sim/instruments", json=[item])  # the same rules again: a no-op
    assert again.status_code == 200 and again.json()["list"] == [listed]
    changed = {**item, "lotSizeFilter": {**item["lotSizeFilter"], "minOrderQty": "0.002", "qtyStep": "0.002"}}
    refused = http.client.post("/sim/instruments", json=[changed])
    assert refused.status_code == 400 and "BTC2USDT is already listed with different rules" in refused.text
    assert simulator.engine.linear["BTC2USDT"].min_qty == D("0.001")


@pytest.mark.parametrize(
    "bad, needle",
    [
        ({**COMPACT, "tickSize": 0.01}, "S01USDT: tickSize must be a decimal string"),
        ({**COMPACT, "ticksize": "0.01"}, "unknown field(s) ['ticksize']"),
        ({**COMPACT, "price": "100.005"}, "price 100.005 is not a multiple of tickSize 0.01"),
        ({**COMPACT, "price": None}, "S01USDT: price is required"),
        ({**COMPACT, "symbol": "s01usdt"}, "symbol 's01usdt' is invalid"),
        ({**COMPACT, "symbol": "S01PERP"}, "ending in USDT"),
        ({**COMPACT, "minOrderQty": "0.015"}, "minOrderQty must be a positive multiple of qtyStep"),
        ({**COMPACT, "maxMktOrderQty": "200000"}, "minOrderQty <= maxMktOrderQty <= maxOrderQty"),
        ({**COMPACT, "symbolId": 5}, "symbolId 5 is already used by BTCUSDT"),
        ({**COMPACT, "symbol": "BTCUSDT"}, "BTCUSDT is already listed with different rules"),
        ("S01USDT", "must be a JSON object"),
    ],
)
def test_a_bad_definition_is_refused_with_its_reason_and_nothing_is_added(http, simulator, bad, needle):
    good = {**COMPACT, "symbol": "GOODUSDT"}
    response = http.client.post("/sim/instruments", json=[good, bad])
    assert response.status_code == 400 and needle in response.json()["error"], response.text
    assert set(simulator.engine.linear) == set(LINEAR), "all or nothing"
    assert "GOODUSDT" not in simulator.engine.prices


def test_compact_defaults_are_derived_from_the_step_and_the_price():
    spec = linear_spec_from_definition({"symbol": "ABCUSDT", "price": "2.5", "tickSize": "0.001",
                                        "qtyStep": "1"}, default_symbol_id=123)
    assert (spec.min_qty, spec.max_qty, spec.max_mkt_qty, spec.min_notional) == (D(1), D(1000000), D(200000), D(5))
    assert (spec.min_price, spec.max_price, spec.max_leverage, spec.symbol_id) == (D("0.001"), D(2500), D(50), 123)
    assert spec.price_scale == 3 and spec.base == "ABC"
    with pytest.raises(InstrumentDefinitionError, match="maxOrderQty and maxMktOrderQty must be multiples"):
        linear_spec_from_definition({**COMPACT, "maxOrderQty": "100000.005"}, default_symbol_id=1)


def test_construction_time_instruments_survive_reset_and_run_time_ones_do_not():
    engine = SimEngine(extra_instruments=[COMPACT])
    engine.add_instrument({**COMPACT, "symbol": "S02USDT"})
    engine.create_order({"category": "linear", "symbol": "S01USDT", "side": "Buy", "orderType": "Market",
                         "qty": "1.00"})
    engine.set_price("S01USDT", "101.00")
    engine.reset()
    assert "S01USDT" in engine.linear and "S02USDT" not in engine.linear and "S02USDT" not in engine.prices
    assert engine.prices["S01USDT"] == D("100.00") and engine.positions[("S01USDT", 0)].size == 0
    with pytest.raises(ValueError, match="S03USDT: qtyStep is required"):
        SimEngine(extra_instruments=[{**COMPACT, "symbol": "S03USDT", "qtyStep": None}])


def test_build_app_lists_extra_instruments_and_reset_keeps_them():
    app = build_app(api_key="k", api_secret="s", extra_instruments=[COMPACT])
    with TestClient(app) as client:
        symbols = [i["symbol"] for i in client.get("/v5/market/instruments-info?category=linear").json()
                   ["result"]["list"]]
        assert symbols[-1] == "S01USDT"
        assert client.post("/sim/instruments", json={**COMPACT, "symbol": "S09USDT"}).status_code == 200
        assert [i["symbol"] for i in client.get("/sim/instruments").json()["list"]][-2:] == ["S01USDT", "S09USDT"]
        client.post("/sim/reset")
        assert [i["symbol"] for i in client.get("/sim/instruments").json()["list"]][-1] == "S01USDT"
    with pytest.raises(ValueError, match="instrument definitions must be a list"):
        build_app(api_key="k", api_secret="s", extra_instruments=COMPACT)


def test_max_fill_qty_and_coin_info_know_added_symbols(http, simulator):
    simulator.add_instruments([COMPACT])
    assert http.control("/sim/config", {"max_fill_qty": {"S01USDT": "0.10"}})["max_fill_qty"] == {"S01USDT": "0.10"}
    coins = [row["coin"] for row in http.get("/v5/asset/coin/query-info")["result"]["rows"]]
    assert "S01" in coins
