"""Signature checks, Bybit error codes, envelope, rate limits and pagination over real HTTP."""

import json
import time
from dataclasses import replace
from decimal import Decimal

import httpx
import pytest

from exchange.simulator import instruments
from exchange.simulator.auth import sign
from tests.exchange.simulator.helpers import SignedHttp, hmac_hex

# Worked example in shared/BYBIT.md §1 (computed with pybit's algorithm, cross-checked with openssl).
VECTOR_KEY, VECTOR_SECRET, VECTOR_TS = "XXXXXXXXXX", "YYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYYY", "1658384314791"


def test_signature_matches_the_published_vectors():
    query = "category=linear&limit=50&openOnly=0&symbol=BTCUSDT"
    assert sign(VECTOR_SECRET, VECTOR_TS, VECTOR_KEY, "5000", query.encode()) == (
        "8cf9c56cd649635f2492428dd2ceda456b88646b44b9ba40c2ef0b2e99640a1d")
    body = ('{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001", '
            '"price": "25000", "timeInForce": "PostOnly", "positionIdx": 0, "orderLinkId": "om-20240101-000001"}')
    assert sign(VECTOR_SECRET, VECTOR_TS, VECTOR_KEY, "5000", body.encode()) == (
        "f3f4fc45ba5d4b8b1f68bf52bc5ced3ca96ddf30068106e1dc896792799631cc")
    compact = json.dumps(json.loads(body), separators=(",", ":"))
    assert sign(VECTOR_SECRET, VECTOR_TS, VECTOR_KEY, "5000", compact.encode()) == (
        "3918523940e4632431f4d36b3763ba9edbe6cf4d37dbc92be1299d2191b2289f")


def test_get_is_checked_against_the_query_string_as_sent(http):
    unsorted = "symbol=BTCUSDT&category=linear"
    assert http.get_raw("/v5/position/list", unsorted).json()["retCode"] == 0
    bad = http.client.get(f"/v5/position/list?{unsorted}", headers=http.headers("category=linear&symbol=BTCUSDT"))
    assert bad.json()["retCode"] == 10004


def test_post_is_checked_against_the_exact_body_bytes(http, simulator):
    body = json.dumps({"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.001"})
    spaced_signature = http.headers(body)
    compact = json.dumps(json.loads(body), separators=(",", ":"))
    answer = http.client.post("/v5/order/create", content=compact, headers=spaced_signature).json()
    assert answer["retCode"] == 10004 and answer["result"] == {}
    assert simulator.engine.orders == {}  # nothing happened
    assert http.post_raw("/v5/order/create", compact).json()["retCode"] == 0


@pytest.mark.parametrize(
    "offset_ms, recv_window, code",
    [
        (-6000, "5000", 10002),  # older than recv_window
        (3000, "5000", 10002),  # more than 1 s ahead of the server
        (500, "5000", 0),  # up to 1 s ahead is tolerated
        (-8000, "20000", 0),  # a wider window accepts it
        (0, None, 0),  # header omitted: 5000 is signed and assumed
    ],
)
def test_timestamp_window(http, offset_ms, recv_window, code):
    ts = int(time.time() * 1000) + offset_ms
    answer = http.get_raw("/v5/account/wallet-balance", "accountType=UNIFIED", ts=ts, recv_window=recv_window).json()
    assert answer["retCode"] == code, answer


def test_wrong_signature_is_10004(http):
    answer = http.get_raw("/v5/account/wallet-balance", "accountType=UNIFIED", sign="0" * 64).json()
    assert (answer["retCode"], answer["result"]) == (10004, {})


def test_unknown_key_is_10003(simulator):
    stranger = SignedHttp(simulator.url, "other-key", "sim-secret")
    assert stranger.get_raw("/v5/account/wallet-balance", "accountType=UNIFIED").json()["retCode"] == 10003
    unsigned = stranger.client.get("/v5/account/wallet-balance?accountType=UNIFIED").json()
    assert unsigned["retCode"] == 10003
    stranger.close()


def test_envelope_shape_and_public_endpoints_need_no_signature(simulator):
    answer = httpx.get(f"{simulator.url}/v5/market/tickers?category=linear&symbol=BTCUSDT").json()
    assert set(answer) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    assert isinstance(answer["time"], int)
    [ticker] = answer["result"]["list"]
    assert (ticker["bid1Price"], ticker["lastPrice"], ticker["ask1Price"]) == ("64999.90", "65000.00", "65000.10")
    server = httpx.get(f"{simulator.url}/v5/market/time").json()["result"]
    assert abs(int(server["timeSecond"]) - time.time()) < 5 and server["timeNano"].startswith(server["timeSecond"])


@pytest.mark.parametrize(
    "overrides, code, needle",
    [
        ({"qty": "0.0105"}, 10001, "qtyStep"),
        ({"qty": 0.01}, 10001, "string"),
        ({"price": "60000.05"}, 10001, "tickSize"),
        ({"symbol": "NOPEUSDT"}, 10001, "symbol"),
        ({"side": "buy"}, 10001, "side"),
        ({"positionIdx": 1}, 10001, "position idx not match position mode"),
        ({"orderLinkId": "x" * 37}, 10001, "36"),
        ({"qty": "0.000", "orderType": "Market", "price": None}, 10001, "positive"),
        ({"qty": "0.001", "price": "4000.0"}, 110094, "minimum order value"),
        ({"symbol": "ETHUSDT", "qty": "0.001", "price": "3000.00"}, 10001, "qtyStep"),
        ({"symbol": "SOLUSDT", "qty": "0.05", "price": "100.000"}, 10001, "qtyStep"),
        ({"symbol": "XRPUSDT", "qty": "0", "price": "0.5000"}, 10001, "positive"),
        ({"orderType": "Market", "price": None, "qty": "501.000"}, 10001, "maximum"),
        ({"qty": "100.000", "price": "60000.0"}, 110007, "not enough"),
        ({"reduceOnly": True}, 110017, "reduce-only"),
        ({"category": "inverse"}, 10001, "not supported"),
    ],
)
def test_create_order_errors(http, simulator, overrides, code, needle):
    answer = http.order(**overrides)
    assert (answer["retCode"], answer["result"]) == (code, {}), answer
    assert needle in answer["retMsg"]
    assert simulator.engine.orders == {}


def test_below_min_order_qty(http, simulator):
    # Every built-in symbol has minOrderQty == qtyStep (as on Bybit for these): list one with a higher minimum.
    simulator.add_instruments([replace(instruments.LINEAR["BTCUSDT"], symbol="MINQTYUSDT", symbol_id=500,
                                       min_qty=Decimal("0.005"))])
    answer = http.order(symbol="MINQTYUSDT", qty="0.004", price="64000.0")
    assert answer["retCode"] == 10001 and "minimum limit" in answer["retMsg"]
    assert simulator.engine.orders == {}


def test_duplicate_order_link_id_is_110072_and_creates_nothing(http, simulator):
    assert http.order(orderLinkId="dup-1")["retCode"] == 0
    answer = http.order(orderLinkId="dup-1", price="59000.0")
    assert (answer["retCode"], answer["retMsg"]) == (110072, "OrderLinkedID is duplicate")
    assert len(simulator.engine.orders) == 1


def test_unknown_or_closed_orders_are_110001(http):
    common = {"category": "linear", "symbol": "BTCUSDT"}
    assert http.post("/v5/order/cancel", **common, orderLinkId="nope")["retCode"] == 110001
    assert http.post("/v5/order/amend", **common, orderId="nope", price="1.0")["retCode"] == 110001
    http.order(orderType="Market", price=None, orderLinkId="gone")
    assert http.post("/v5/order/cancel", **common, orderLinkId="gone")["retCode"] == 110001


def test_amend_rules(http, simulator):
    common = {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "am-1"}
    http.order(orderLinkId="am-1")
    assert http.post("/v5/order/amend", **common, price="60000.0")["retCode"] == 34040
    simulator.engine.force_fill(order_link_id="am-1", qty="0.004")
    assert http.post("/v5/order/amend", **common, qty="0.004")["retCode"] == 110064
    assert http.post("/v5/order/amend", **common, qty="0.008")["retCode"] == 0
    assert simulator.engine.orders_by_link["am-1"].leaves_qty == Decimal("0.004")


def test_position_mode_switch_errors(http, simulator):
    switch = {"category": "linear", "symbol": "BTCUSDT"}
    assert http.post("/v5/position/switch-mode", **switch, mode=0)["retCode"] == 110025
    http.order(orderLinkId="open-1")
    assert http.post("/v5/position/switch-mode", **switch, mode=3)["retCode"] == 110028
    http.post("/v5/order/cancel", **switch, orderLinkId="open-1")
    http.order(orderType="Market", price=None)
    assert http.post("/v5/position/switch-mode", **switch, mode=3)["retCode"] == 110024
    assert http.post("/v5/position/switch-mode", category="linear", symbol="ETHUSDT", mode=3)["retCode"] == 0
    rows = http.get("/v5/position/list", category="linear", symbol="ETHUSDT")["result"]["list"]
    assert [(r["positionIdx"], r["side"], r["size"]) for r in rows] == [(1, "", "0.00"), (2, "", "0.00")]
    answer = http.order(symbol="ETHUSDT", price="3000.00", qty="0.10")
    assert answer["retCode"] == 10001 and answer["retMsg"] == "position idx not match position mode"
    assert http.order(symbol="ETHUSDT", price="3000.00", qty="0.10", positionIdx=1)["retCode"] == 0


def test_rate_limit_headers(http):
    response = http.get_raw("/v5/order/realtime", "category=linear&symbol=BTCUSDT")
    assert response.headers["X-Bapi-Limit"] == "5000"  # Bybit's 50/s x the default scale of 100
    assert int(response.headers["X-Bapi-Limit-Status"]) == 4999
    assert int(response.headers["X-Bapi-Limit-Reset-Timestamp"]) > time.time() * 1000 - 1000


def test_rate_limit_budget_gives_10006_and_processes_nothing(http, simulator):
    for _attempt in range(5):  # retry if the burst straddles a one-second window edge
        simulator.reset()
        http.control("/sim/rate-limits", {"limits": {"/v5/order/create": 2}})
        body = {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.010",
                "price": "60000.0"}
        answers = [http.post_raw("/v5/order/create", json.dumps({**body, "orderLinkId": f"rl-{i}"}))
                   for i in range(3)]
        resets = {a.headers["X-Bapi-Limit-Reset-Timestamp"] for a in answers}
        if len(resets) == 1:
            break
    assert [a.json()["retCode"] for a in answers] == [0, 0, 10006]
    assert [a.headers["X-Bapi-Limit-Status"] for a in answers] == ["1", "0", "0"]
    assert sorted(o.order_link_id for o in simulator.engine.orders.values()) == ["rl-0", "rl-1"]


def test_pagination_of_orders_history_executions_positions_and_instruments(http, simulator):
    for i in range(7):
        http.order(orderType="Market", price=None, qty="0.001", orderLinkId=f"p-{i}")

    def walk(path, limit, **params):
        seen, cursor = [], None
        while True:
            result = http.get(path, **params, limit=limit, cursor=cursor)["result"]
            seen += result["list"]
            cursor = result["nextPageCursor"]
            if not cursor:
                return seen

    history = walk("/v5/order/history", 3, category="linear", symbol="BTCUSDT")
    assert [o["orderLinkId"] for o in history] == [f"p-{i}" for i in reversed(range(7))]
    fills = walk("/v5/execution/list", 2, category="linear", symbol="BTCUSDT")
    assert len({f["execId"] for f in fills}) == 7
    closed = walk("/v5/order/realtime", 4, category="linear", symbol="BTCUSDT", openOnly=1)
    assert len(closed) == 7
    for symbol in ("ETHUSDT", "SOLUSDT"):
        http.order(symbol=symbol, orderType="Market", price=None, qty="1.00" if symbol == "ETHUSDT" else "1.0")
    positions = walk("/v5/position/list", 1, category="linear", settleCoin="USDT")
    assert [p["symbol"] for p in positions] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    instruments = walk("/v5/market/instruments-info", 2, category="linear")
    assert [i["symbol"] for i in instruments] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]
    assert http.get("/v5/order/history", category="linear", limit=51)["retCode"] == 10001
    assert http.get("/v5/order/history", category="linear", cursor="garbage")["retCode"] == 10001


def test_history_window_is_at_most_seven_days(http):
    now = int(time.time() * 1000)
    answer = http.get("/v5/execution/list", category="linear", startTime=now - 8 * 86400_000, endTime=now)
    assert answer["retCode"] == 10001 and "7 days" in answer["retMsg"]


def test_cancel_all_and_unified_account_endpoints(http, simulator):
    for i in range(3):
        http.order(orderLinkId=f"ca-{i}")
    answer = http.post("/v5/order/cancel-all", category="linear", symbol="BTCUSDT")
    assert answer["result"]["success"] == "1" and len(answer["result"]["list"]) == 3
    assert all(o.status == "Cancelled" for o in simulator.engine.orders.values())
    assert http.get("/v5/user/query-api")["result"]["uta"] == 1
    assert http.get("/v5/account/info")["result"]["unifiedMarginStatus"] >= 5
    assert hmac_hex("k", "v") == sign("k", "", "", "", b"v")
