"""Client behaviour at the transport edge (httpx.MockTransport): error mapping, backoff, idempotent create.

The same behaviours are exercised over real HTTP against the simulator in
test_client_simulator.py; here each edge case is scripted exactly.
"""

import logging
import random
from decimal import Decimal

import httpx
import pytest

from exchange.bybit import errors as E
from exchange.bybit.client import BybitClient
from exchange.bybit.retry import RetryPolicy
from exchange.bybit.types import OrderAck
from exchange.models import ExchangeCall

from .conftest import KEY, SECRET, SERVER_MS, envelope

pytestmark = pytest.mark.django_db

CREATE = "/v5/order/create"
REALTIME = "/v5/order/realtime"
HISTORY = "/v5/order/history"


def order_item(link: str, status: str = "New", order_id: str = "1001") -> dict:
    return {
        "orderId": order_id, "orderLinkId": link, "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit",
        "orderStatus": status, "qty": "0.010", "price": "25000.0", "avgPrice": "", "cumExecQty": "0",
        "cumExecValue": "0", "leavesQty": "0.010", "timeInForce": "GTC", "positionIdx": 0,
        "createdTime": "1700000000000", "updatedTime": "1700000000000",
    }  # fmt: skip


def create(client: BybitClient, link: str = "sig-1-0", **kw) -> OrderAck:
    args = dict(category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=Decimal("0.010"),
                price=Decimal("25000.0"), order_link_id=link, trace_id="trace-1")  # fmt: skip
    args.update(kw)
    return client.create_order(**args)


# ------------------------------------------------------------------ signing on the wire


def test_create_sends_exactly_the_signed_compact_body(make_client, fake_bybit):
    fake_bybit.script(CREATE, envelope({"orderId": "1321003749386327552", "orderLinkId": "om-20240101-000001"}))
    client = make_client()
    ack = client.create_order(
        category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=Decimal("0.001"),
        price=Decimal("25000"), time_in_force="PostOnly", position_idx=0, order_link_id="om-20240101-000001",
    )  # fmt: skip
    assert ack == OrderAck(order_id="1321003749386327552", order_link_id="om-20240101-000001")
    request = fake_bybit.requests[-1]
    assert request.content == (
        b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.001","price":"25000",'
        b'"timeInForce":"PostOnly","positionIdx":0,"orderLinkId":"om-20240101-000001"}'
    )
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-BAPI-API-KEY"] == KEY
    assert request.headers["X-BAPI-TIMESTAMP"] == str(SERVER_MS)
    assert request.headers["X-BAPI-RECV-WINDOW"] == "5000"
    assert request.headers["X-BAPI-SIGN-TYPE"] == "2"
    assert fake_bybit.bad_signatures == []


def test_pagination_sends_cursor_unchanged_and_collects_all_pages(make_client, fake_bybit):
    cursor = "page_args%3Dfd4300ae-7847%26symbol%3D6%26"
    fake_bybit.script(
        REALTIME,
        envelope({"list": [order_item("a", order_id="1")], "nextPageCursor": cursor, "category": "linear"}),
        envelope({"list": [order_item("b", order_id="2")], "nextPageCursor": "", "category": "linear"}),
    )
    orders = make_client().get_open_orders(category="linear", symbol="BTCUSDT")
    assert [o.order_link_id for o in orders] == ["a", "b"]
    second = [r for r in fake_bybit.requests if r.url.path == REALTIME][1]
    assert second.url.query.decode() == f"category=linear&cursor={cursor}&limit=50&openOnly=0&symbol=BTCUSDT"
    assert second.content == b"" and "Content-Type" not in second.headers
    assert fake_bybit.bad_signatures == []


def test_repeated_cursor_is_an_error_not_an_endless_loop(make_client, fake_bybit):
    page = envelope({"list": [order_item("a")], "nextPageCursor": "c1"})
    fake_bybit.script(REALTIME, page, page)
    with pytest.raises(E.BybitError, match="cursor 'c1' twice"):
        make_client().get_open_orders(category="linear")


# ------------------------------------------------------------------ server clock


def test_clock_skew_is_corrected_from_server_time(make_client, fake_bybit):
    fake_bybit.script(REALTIME, envelope({"list": [], "nextPageCursor": ""}))
    client = make_client(wall_clock=lambda: SERVER_MS / 1000 + 30.0)  # local clock 30 s ahead
    client.get_open_orders(category="linear")
    assert fake_bybit.paths() == ["/v5/market/time", REALTIME]
    assert int(fake_bybit.requests[-1].headers["X-BAPI-TIMESTAMP"]) == SERVER_MS


def test_timestamp_rejection_resyncs_and_resigns(make_client, fake_bybit, clock):
    fake_bybit.script(
        REALTIME,
        envelope(code=10002, msg="invalid request, please check your server timestamp or recv_window param"),
        envelope({"list": [], "nextPageCursor": ""}),
    )
    client = make_client()
    assert client.get_open_orders(category="linear") == []
    assert fake_bybit.paths() == ["/v5/market/time", REALTIME, "/v5/market/time", REALTIME]
    assert clock.sleeps == []  # re-signing needs no wait


# ------------------------------------------------------------------ error mapping

RET_CODES = [
    (10001, E.BybitInvalidRequestError, False, False),
    (10002, E.BybitTimestampError, True, False),
    (10003, E.BybitAuthError, False, False),
    (10004, E.BybitAuthError, False, False),
    (10005, E.BybitAuthError, False, False),
    (10006, E.BybitRateLimitError, True, False),
    (10000, E.BybitServerError, True, True),
    (10016, E.BybitServerError, True, True),
    (110004, E.BybitInsufficientBalanceError, False, False),
    (110007, E.BybitInsufficientBalanceError, False, False),
    (110012, E.BybitInsufficientBalanceError, False, False),
    (110001, E.BybitOrderNotFoundError, False, False),
    (170213, E.BybitOrderNotFoundError, False, False),
    (110008, E.BybitOrderClosedError, False, False),
    (110010, E.BybitOrderClosedError, False, False),
    (110072, E.BybitDuplicateOrderError, False, True),
    (110017, E.BybitReduceOnlyError, False, False),
    (110094, E.BybitMinNotionalError, False, False),
    (110079, E.BybitBusyError, True, False),
    (999999, E.BybitError, False, False),
]


@pytest.mark.parametrize(("code", "cls", "retryable", "ambiguous"), RET_CODES)
def test_ret_codes_map_to_the_hierarchy(code, cls, retryable, ambiguous):
    assert E.error_class_for_ret_code(code) is cls
    assert (cls.retryable, cls.ambiguous) == (retryable, ambiguous)


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, E.BybitRateLimitError), (403, E.BybitForbiddenError), (401, E.BybitAuthError),
     (404, E.BybitInvalidRequestError), (500, E.BybitTransportError), (503, E.BybitTransportError)],
)  # fmt: skip
def test_http_status_is_checked_before_ret_code(make_client, fake_bybit, status, cls):
    fake_bybit.script("/v5/market/tickers", *[httpx.Response(status, text="busy")] * 4)
    client = make_client(retry=RetryPolicy(max_attempts=1))
    with pytest.raises(cls) as info:
        client.get_tickers(category="linear", symbol="BTCUSDT")
    assert info.value.http_status == status
    assert info.value.endpoint == "/v5/market/tickers"


def test_final_error_carries_context_and_is_not_retried(make_client, fake_bybit):
    fake_bybit.script(CREATE, envelope(code=110007, msg="ab not enough for new order"))
    with pytest.raises(E.BybitInsufficientBalanceError) as info:
        create(make_client())
    exc = info.value
    assert (exc.ret_code, exc.ret_msg, exc.endpoint, exc.trace_id) == (
        110007, "ab not enough for new order", CREATE, "trace-1"
    )  # fmt: skip
    assert "retCode=110007" in str(exc) and "trace_id=trace-1" in str(exc)
    assert fake_bybit.paths().count(CREATE) == 1 and REALTIME not in fake_bybit.paths()


def test_unreadable_200_is_ambiguous(make_client, fake_bybit):
    fake_bybit.script("/v5/market/tickers", httpx.Response(200, text="<html>gateway</html>"))
    with pytest.raises(E.BybitTransportError):
        make_client(retry=RetryPolicy(max_attempts=1)).get_tickers(category="linear")


# ------------------------------------------------------------------ secrets


def test_secret_and_signature_never_leak(make_client, fake_bybit, caplog):
    caplog.set_level(logging.DEBUG)
    # Bybit's 10004 message echoes the string it signed; make it echo credentials too, as a worst case.
    leak = f"error sign! origin_string[{SERVER_MS}{KEY}5000category=linear] sign={'ab' * 32} secret={SECRET}"
    fake_bybit.script(CREATE, envelope(code=10004, msg=leak))
    with pytest.raises(E.BybitAuthError) as info:
        create(make_client())
    signature = fake_bybit.requests[-1].headers["X-BAPI-SIGN"]
    rows = list(ExchangeCall.objects.values())
    haystacks = [str(info.value), repr(info.value), info.value.ret_msg, caplog.text, str(rows)]
    haystacks += [str(r.__dict__) for r in caplog.records]
    for text in haystacks:
        assert SECRET not in text
        assert signature not in text
        assert KEY not in text
    assert rows and all(r["ret_code"] == 10004 for r in rows if r["path"] == CREATE)


# ------------------------------------------------------------------ backoff


def test_reads_back_off_exponentially_with_jitter(make_client, fake_bybit, clock):
    fake_bybit.script("/v5/market/tickers", *[httpx.Response(502)] * 3, envelope({"list": []}))
    policy = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0, multiplier=2.0, total_timeout=60.0,
                         rng=random.Random(7))  # fmt: skip
    make_client(retry=policy).get_tickers(category="linear")
    assert len(clock.sleeps) == 3
    for delay, ceiling in zip(clock.sleeps, [1.0, 2.0, 4.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    expected_rng = random.Random(7)
    assert clock.sleeps == [c * (1 - 0.5 * expected_rng.random()) for c in (1.0, 2.0, 4.0)]


def test_attempts_are_capped(make_client, fake_bybit, clock):
    fake_bybit.script("/v5/market/tickers", *[httpx.Response(503)] * 10)
    with pytest.raises(E.BybitTransportError):
        make_client().get_tickers(category="linear")
    assert fake_bybit.paths().count("/v5/market/tickers") == 4
    assert len(clock.sleeps) == 3


def test_total_time_is_bounded_by_the_operation_timeout(make_client, fake_bybit, clock):
    fake_bybit.script("/v5/market/tickers", *[httpx.Response(503)] * 10)
    policy = RetryPolicy(max_attempts=10, base_delay=2.0, max_delay=30.0, multiplier=2.0, total_timeout=10.0)
    start = clock.now
    with pytest.raises(E.BybitTransportError):
        make_client(retry=policy).get_tickers(category="linear")
    assert clock.now - start < 10.0
    assert fake_bybit.paths().count("/v5/market/tickers") < 10


def test_max_delay_caps_each_wait(make_client, fake_bybit, clock):
    fake_bybit.script("/v5/market/tickers", *[httpx.Response(503)] * 5, envelope({"list": []}))
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=3.0, multiplier=10.0, total_timeout=60.0)
    make_client(retry=policy).get_tickers(category="linear")
    assert max(clock.sleeps) <= 3.0


# ------------------------------------------------------------------ idempotent create


def test_create_after_timeout_finds_the_order_and_does_not_resend(make_client, fake_bybit):
    fake_bybit.script(CREATE, httpx.ReadTimeout("timed out"))
    fake_bybit.script(REALTIME, envelope({"list": [order_item("sig-1-0", order_id="777")], "nextPageCursor": ""}))
    ack = create(make_client())
    assert ack == OrderAck(order_id="777", order_link_id="sig-1-0", resolved_existing=True)
    assert fake_bybit.paths().count(CREATE) == 1
    lookup = [r for r in fake_bybit.requests if r.url.path == REALTIME][0]
    assert lookup.url.params["orderLinkId"] == "sig-1-0"


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("t"), httpx.RemoteProtocolError("reset"), httpx.Response(502), httpx.Response(504),
     envelope(code=10000, msg="server timeout"), envelope(code=10016, msg="service restarting")],
    ids=["read-timeout", "reset", "502", "504", "10000", "10016"],
)  # fmt: skip
def test_ambiguous_create_is_looked_up_then_resent_only_when_absent(make_client, fake_bybit, failure):
    fake_bybit.script(CREATE, failure, envelope({"orderId": "900", "orderLinkId": "sig-1-0"}))
    fake_bybit.script(REALTIME, envelope({"list": [], "nextPageCursor": ""}))
    fake_bybit.script(HISTORY, envelope({"list": [], "nextPageCursor": ""}))
    ack = create(make_client())
    assert ack == OrderAck(order_id="900", order_link_id="sig-1-0")
    assert fake_bybit.paths()[1:] == [CREATE, REALTIME, HISTORY, CREATE]
    assert fake_bybit.bodies(CREATE)[0] == fake_bybit.bodies(CREATE)[1]


def test_duplicate_link_id_resolves_to_the_existing_order(make_client, fake_bybit):
    fake_bybit.script(CREATE, envelope(code=110072, msg="OrderLinkedID is duplicate"))
    fake_bybit.script(REALTIME, envelope({"list": [], "nextPageCursor": ""}))
    fake_bybit.script(HISTORY, envelope({"list": [order_item("sig-1-0", "Filled", "55")], "nextPageCursor": ""}))
    ack = create(make_client())
    assert ack == OrderAck(order_id="55", order_link_id="sig-1-0", resolved_existing=True)


def test_duplicate_link_id_waits_for_the_order_to_become_visible(make_client, fake_bybit, clock):
    empty = envelope({"list": [], "nextPageCursor": ""})
    fake_bybit.script(CREATE, envelope(code=110072, msg="OrderLinkedID is duplicate"))
    fake_bybit.script(REALTIME, empty, envelope({"list": [order_item("sig-1-0")], "nextPageCursor": ""}))
    fake_bybit.script(HISTORY, empty)
    assert create(make_client()).resolved_existing is True
    assert len(clock.sleeps) == 1
    assert fake_bybit.paths().count(CREATE) == 1


def test_duplicate_that_never_becomes_visible_is_ambiguous_not_resent(make_client, fake_bybit):
    empty = envelope({"list": [], "nextPageCursor": ""})
    fake_bybit.script(CREATE, envelope(code=110072, msg="OrderLinkedID is duplicate"))
    fake_bybit.script(REALTIME, *[empty] * 4)
    fake_bybit.script(HISTORY, *[empty] * 4)
    with pytest.raises(E.BybitDuplicateOrderError) as info:
        create(make_client())
    assert info.value.ambiguous is True
    assert fake_bybit.paths().count(CREATE) == 1


def test_connect_error_is_retried_without_a_lookup(make_client, fake_bybit):
    fake_bybit.script(CREATE, httpx.ConnectError("refused"), envelope({"orderId": "1", "orderLinkId": "sig-1-0"}))
    assert create(make_client()).order_id == "1"
    assert REALTIME not in fake_bybit.paths()
    assert fake_bybit.paths().count(CREATE) == 2


def test_create_is_not_resent_when_the_lookup_fails(make_client, fake_bybit):
    fake_bybit.script(CREATE, httpx.ReadTimeout("t"))
    fake_bybit.script(REALTIME, *[httpx.Response(502)] * 4)
    with pytest.raises(E.BybitTransportError) as info:
        create(make_client())
    assert info.value.ambiguous
    assert fake_bybit.paths().count(CREATE) == 1


@pytest.mark.parametrize(
    "last",
    [envelope(code=10006, msg="Too many visits!"), envelope(code=110007, msg="ab not enough for new order")],
    ids=["rate-limited-until-out-of-attempts", "refused"],
)  # fmt: skip
def test_a_create_given_up_after_an_ambiguous_attempt_is_of_unknown_outcome(make_client, fake_bybit, last):
    """The first request timed out and the order was not visible at once; the exchange may still apply that
    request (it came in late, within its recv window) while later attempts are refused. The last refusal is about
    its own attempt: the outcome stays unknown, so the order is held, not recorded as not placed (0210)."""
    fake_bybit.script(CREATE, httpx.ReadTimeout("t"), *[last] * 3)
    fake_bybit.script(REALTIME, envelope({"list": [], "nextPageCursor": ""}))
    fake_bybit.script(HISTORY, envelope({"list": [], "nextPageCursor": ""}))
    with pytest.raises(E.BybitError) as info:
        create(make_client())
    assert info.value.ret_code == last["retCode"]
    assert info.value.ambiguous is True and info.value.after_ambiguous_attempt is True
    assert fake_bybit.paths().count(CREATE) >= 2  # sent again after the lookup found nothing


def test_a_create_refused_without_an_ambiguous_attempt_is_not_placed(make_client, fake_bybit):
    fake_bybit.script(CREATE, envelope(code=110007, msg="ab not enough for new order"))
    with pytest.raises(E.BybitError) as info:
        create(make_client())
    assert info.value.ambiguous is False and info.value.after_ambiguous_attempt is False


def test_rejected_create_is_retried_after_the_rate_limit_reset(make_client, fake_bybit, clock):
    limited = httpx.Response(
        200, json=envelope(code=10006, msg="Too many visits!"),
        headers={"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(SERVER_MS + 750)},
    )  # fmt: skip
    fake_bybit.script(CREATE, limited, envelope({"orderId": "2", "orderLinkId": "sig-1-0"}))
    assert create(make_client()).order_id == "2"
    [slept] = clock.sleeps
    assert 0.75 <= slept <= 0.76  # until the reset, plus a few ms for the clock offset's error: never early
    assert REALTIME not in fake_bybit.paths()  # 10006 means "not executed": no lookup needed


# ------------------------------------------------------------------ cancel, amend, mode


def test_cancel_whose_answer_was_lost_reports_the_cancellation(make_client, fake_bybit):
    fake_bybit.script("/v5/order/cancel", httpx.Response(502), envelope(code=110001, msg="order not exists"))
    fake_bybit.script(REALTIME, envelope({"list": [order_item("sig-1-0", "Cancelled", "9")], "nextPageCursor": ""}))
    ack = make_client().cancel_order(category="linear", symbol="BTCUSDT", order_link_id="sig-1-0")
    assert ack == OrderAck(order_id="9", order_link_id="sig-1-0", resolved_existing=True)


def test_cancel_of_an_unknown_order_is_final(make_client, fake_bybit):
    fake_bybit.script("/v5/order/cancel", envelope(code=110001, msg="order not exists or too late to cancel"))
    with pytest.raises(E.BybitOrderNotFoundError):
        make_client().cancel_order(category="linear", symbol="BTCUSDT", order_link_id="nope")
    assert fake_bybit.paths().count("/v5/order/cancel") == 1


def test_amend_and_bad_input(make_client, fake_bybit):
    client = make_client()
    fake_bybit.script("/v5/order/amend", envelope({"orderId": "5", "orderLinkId": "x"}))
    ack = client.amend_order(category="linear", symbol="BTCUSDT", order_link_id="x", price=Decimal("25100.5"))
    assert ack.order_id == "5"
    assert fake_bybit.bodies("/v5/order/amend") == [
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "x", "price": "25100.5"}
    ]
    sent = len(fake_bybit.requests)
    with pytest.raises(ValueError, match="new qty or a new price"):
        client.amend_order(category="linear", symbol="BTCUSDT", order_link_id="x")
    with pytest.raises(ValueError, match="order_link_id"):
        create(client, link="bad id with spaces")
    with pytest.raises(ValueError, match="order_link_id"):
        create(client, link="x" * 37)
    with pytest.raises(ValueError, match="positive"):
        create(client, qty=Decimal("0"))
    with pytest.raises(TypeError, match="Decimal"):
        create(client, qty=0.01)
    with pytest.raises(ValueError, match="needs a price"):
        create(client, price=None)
    with pytest.raises(ValueError, match="give order_id or order_link_id"):
        client.cancel_order(category="linear", symbol="BTCUSDT")
    assert len(fake_bybit.requests) == sent  # nothing was sent for bad input


def test_switch_mode_already_in_mode_is_not_an_error(make_client, fake_bybit):
    fake_bybit.script("/v5/position/switch-mode", envelope(code=110025, msg="Position mode is not modified"))
    assert make_client().switch_position_mode(category="linear", symbol="BTCUSDT", mode=3) is None
    fake_bybit.script("/v5/position/switch-mode", envelope(code=110024, msg="have position"))
    with pytest.raises(E.BybitInvalidRequestError):
        make_client().switch_position_mode(category="linear", symbol="BTCUSDT", mode=0)


def test_cancel_all_repeats_while_a_batch_was_full(make_client, fake_bybit):
    full = envelope({"list": [{"orderId": str(i), "orderLinkId": f"l{i}"} for i in range(500)], "success": "1"})
    fake_bybit.script("/v5/order/cancel-all", full, envelope({"list": [{"orderId": "x", "orderLinkId": "y"}]}))
    acks = make_client().cancel_all_orders(category="linear", symbol="BTCUSDT")
    assert len(acks) == 501 and acks[-1] == OrderAck(order_id="x", order_link_id="y")


def test_history_longer_than_seven_days_is_split_into_windows(make_client, fake_bybit):
    fake_bybit.script(HISTORY, *[envelope({"list": [], "nextPageCursor": ""})] * 3)
    day = 24 * 3600 * 1000
    make_client().get_order_history(category="linear", symbol="BTCUSDT", start_ms=0, end_ms=15 * day)
    windows = [(int(r.url.params["startTime"]), int(r.url.params["endTime"]))
               for r in fake_bybit.requests if r.url.path == HISTORY]  # fmt: skip
    assert windows == [(0, 7 * day), (7 * day + 1, 14 * day + 1), (14 * day + 2, 15 * day)]
    assert all(end - start <= 7 * day for start, end in windows)


# ------------------------------------------------------------------ rate-limit pacing


def test_spent_budget_waits_for_the_reset_before_sending(make_client, fake_bybit, clock):
    headers = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(SERVER_MS + 400)}
    fake_bybit.script("/v5/position/list", httpx.Response(200, json=envelope({"list": []}), headers=headers))
    fake_bybit.script("/v5/position/list", envelope({"list": []}))
    client = make_client()
    client.get_positions(category="linear")
    assert clock.sleeps == []
    client.get_positions(category="linear")
    [slept] = clock.sleeps
    assert 0.4 <= slept <= 0.41  # until the reset, plus a few ms for the clock offset's error: never early
    # other endpoints are paced independently
    fake_bybit.script("/v5/market/tickers", envelope({"list": []}))
    client.get_tickers(category="linear")
    assert len(clock.sleeps) == 1


def test_a_reset_is_waited_for_with_the_clock_offsets_error_on_top(make_client, fake_bybit, clock):
    """Each answer takes 200 ms and the server stamps it late (190 ms in), so the client's estimate of the
    server clock is 90 ms slow. Waiting only what that estimate says would send 90 ms early, into the old
    window (a 10006); the client adds the estimate's error bound (half the round trip) and is never early."""
    wall = {"now": SERVER_MS / 1000}

    def stamped(result: dict, **headers: str):
        def answer(request: httpx.Request) -> httpx.Response:
            body = envelope(result, time_ms=round(wall["now"] * 1000))
            return httpx.Response(200, json=body, headers=headers)
        return answer

    def slow(request: httpx.Request) -> httpx.Response:
        wall["now"] += 0.19
        answer = fake_bybit(request)
        wall["now"] += 0.01
        return answer

    limit = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0"}
    fake_bybit.script("/v5/market/time", stamped({"timeSecond": "0"}))
    fake_bybit.script("/v5/position/list", lambda request: stamped(
        {"list": []}, **limit, **{"X-Bapi-Limit-Reset-Timestamp": str(round(wall["now"] * 1000) + 400)})(request))
    fake_bybit.script("/v5/position/list", stamped({"list": []}))
    client = make_client(transport=httpx.MockTransport(slow), wall_clock=lambda: wall["now"])
    client.get_positions(category="linear")
    client.get_positions(category="linear")
    [slept] = clock.sleeps
    # The window ends 400 ms after the stamp, which is 390 ms after the answer arrived.
    assert 0.39 <= slept <= 0.39 + 0.1 + 0.05


# ------------------------------------------------------------------ audit and dry-run


def test_every_attempt_is_audited(make_client, fake_bybit):
    fake_bybit.script(CREATE, httpx.Response(502), envelope({"orderId": "3", "orderLinkId": "sig-1-0"}))
    fake_bybit.script(REALTIME, envelope({"list": [], "nextPageCursor": ""}))
    fake_bybit.script(HISTORY, envelope({"list": [], "nextPageCursor": ""}))
    create(make_client())
    rows = list(ExchangeCall.objects.filter(path=CREATE).order_by("id"))
    assert [(r.attempt, r.http_status, r.ret_code) for r in rows] == [(1, 502, None), (2, 200, 0)]
    assert all(r.order_link_id == "sig-1-0" and r.trace_id == "trace-1" and r.method == "POST" for r in rows)
    assert rows[0].error.startswith("BybitTransportError")
    assert rows[1].params["qty"] == "0.010" and rows[1].ret_msg == "OK"
    lookups = ExchangeCall.objects.filter(path__in=[REALTIME, HISTORY], order_link_id="sig-1-0")
    assert lookups.count() == 2
    assert ExchangeCall.objects.filter(path="/v5/market/time").count() == 1


def test_dry_run_sends_nothing_and_says_so(make_client, fake_bybit, caplog):
    caplog.set_level(logging.INFO)
    client = make_client(dry_run=True)
    ack = create(client)
    assert ack == OrderAck(order_id="dry-run-sig-1-0", order_link_id="sig-1-0", dry_run=True)
    assert client.cancel_order(category="linear", symbol="BTCUSDT", order_link_id="sig-1-0").dry_run
    assert client.cancel_all_orders(category="linear", symbol="BTCUSDT") == []
    assert fake_bybit.requests == []
    events = [r.msg["event"] for r in caplog.records if isinstance(r.msg, dict)]
    assert "[DRY-RUN] create_order" in events and "[DRY-RUN] cancel_order" in events
    rows = ExchangeCall.objects.filter(dry_run=True)
    assert rows.count() == 3 and rows.filter(path=CREATE, order_link_id="sig-1-0", http_status=None).exists()
    # reads still reach the exchange
    fake_bybit.script("/v5/market/tickers", envelope({"list": []}))
    assert client.get_tickers(category="linear") == []


def test_private_call_without_credentials_sends_nothing(make_client, fake_bybit):
    with pytest.raises(E.BybitAuthError, match="no Bybit API credentials"):
        make_client(api_key="", api_secret="").get_open_orders(category="linear")
    assert fake_bybit.requests == []


def test_audit_can_be_switched_off(make_client, fake_bybit):
    fake_bybit.script("/v5/market/tickers", envelope({"list": []}))
    make_client(audit=False).get_tickers(category="linear")
    assert not ExchangeCall.objects.exists()


def test_market_order_price_is_not_sent(make_client, fake_bybit):
    fake_bybit.script(CREATE, envelope({"orderId": "m1", "orderLinkId": "mkt"}))
    create(make_client(), link="mkt", order_type="Market", price=Decimal("25000"), time_in_force="IOC")
    assert fake_bybit.bodies(CREATE) == [
        {"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "0.010",
         "timeInForce": "IOC", "positionIdx": 0, "orderLinkId": "mkt"}
    ]  # fmt: skip


def test_reduce_only_is_sent_as_a_json_boolean(make_client, fake_bybit):
    fake_bybit.script(CREATE, envelope({"orderId": "r1", "orderLinkId": "ro"}))
    create(make_client(), link="ro", reduce_only=True, position_idx=1)
    [body] = fake_bybit.bodies(CREATE)
    assert body["reduceOnly"] is True and body["positionIdx"] == 1


@pytest.mark.parametrize(
    ("env", "url"),
    [("mainnet", "https://api.bybit.com"), ("testnet", "https://api-testnet.bybit.com"),
     ("demo", "https://api-demo.bybit.com"), ("simulator", "http://127.0.0.1:8765")],
)  # fmt: skip
def test_base_url_follows_bybit_env(settings, env, url):
    from exchange.bybit.client import base_url_from_settings, get_client

    settings.BYBIT_ENV, settings.BYBIT_BASE_URL = env, ""
    settings.SIMULATOR_HOST, settings.SIMULATOR_PORT = "127.0.0.1", 8765
    assert base_url_from_settings() == url
    settings.BYBIT_BASE_URL = "https://api.bybit.nl/"
    get_client.cache_clear()
    try:
        client = get_client()
        assert client.base_url == "https://api.bybit.nl" and client is get_client()
        assert client.timeout == settings.BYBIT_HTTP_TIMEOUT and client.dry_run == settings.ENABLE_DRY_RUN
        assert client.retry.max_attempts == settings.BYBIT_API_RETRY_MAX_ATTEMPTS
        assert client.retry.total_timeout == settings.ORDER_EXECUTION_TIMEOUT
        assert settings.BYBIT_API_SECRET not in repr(client) or not settings.BYBIT_API_SECRET
    finally:
        get_client.cache_clear()


# ------------------------------------------------------------------ no cookies


def test_a_cookie_the_exchange_sets_is_neither_kept_nor_sent_back(make_client, fake_bybit):
    """A request carries only what is signed: a load balancer's cookie from one answer is not replayed on the next."""
    answer = {"orderId": "1001", "orderLinkId": "sig-1-0"}
    fake_bybit.script(CREATE, httpx.Response(200, json=envelope(answer), headers={"Set-Cookie": "lb=node-7; Path=/"}),
                      envelope({"orderId": "1002", "orderLinkId": "sig-2-0"}))  # fmt: skip
    client = make_client()

    create(client, link="sig-1-0")
    create(client, link="sig-2-0")

    creates = [r for r in fake_bybit.requests if r.url.path == CREATE]
    assert len(creates) == 2 and all("cookie" not in r.headers for r in creates)
    assert not client._http.cookies
