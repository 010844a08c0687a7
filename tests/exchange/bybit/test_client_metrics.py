"""The client records every request's duration, failed requests by code, and rate-limit waits (issue 15)."""

from decimal import Decimal

import httpx
import pytest

from exchange.bybit import errors as E
from ordermanager.ops.metrics_collector import metrics_render
from tests.core.metrics_scrape import parse

from .conftest import SERVER_MS, envelope

pytestmark = pytest.mark.django_db

CREATE = "/v5/order/create"
SECONDS = "ordermanager_exchange_request_seconds_count"
ERRORS = "ordermanager_exchange_errors_total"


def scrape():
    return parse(metrics_render().decode())


def create(client, link="sig-1-0"):
    return client.create_order(category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit",
                               qty=Decimal("0.010"), price=Decimal("25000"), order_link_id=link)  # fmt: skip


def test_each_attempt_is_timed_and_each_failure_counted_by_code(make_client, fake_bybit):
    fake_bybit.script(CREATE, httpx.Response(503), envelope({"orderId": "1", "orderLinkId": "sig-1-0"}))
    fake_bybit.script("/v5/order/realtime", envelope({"list": [], "nextPageCursor": ""}))
    fake_bybit.script("/v5/order/history", envelope({"list": [], "nextPageCursor": ""}))
    fake_bybit.script(CREATE, envelope(code=10001, msg="params error"))
    client = make_client()
    before = scrape()

    create(client)
    with pytest.raises(E.BybitError):
        create(client, "sig-2-0")
    after = scrape()

    def delta(name, **labels):
        return after.total(name, **labels) - before.total(name, **labels)

    assert delta(SECONDS, endpoint=CREATE) == 3
    assert delta(ERRORS, endpoint=CREATE, code="503") == 1
    assert delta(ERRORS, endpoint=CREATE, code="10001") == 1
    assert delta(ERRORS, endpoint=CREATE) == 2  # the successful attempt is not an error


def test_a_request_without_an_answer_counts_as_no_answer(make_client, fake_bybit):
    fake_bybit.script("/v5/position/list", *[httpx.ConnectError("refused")] * 4)
    before = scrape()
    with pytest.raises(E.BybitConnectError):
        make_client().get_positions(category="linear")
    after = scrape()
    labels = {"endpoint": "/v5/position/list", "code": "no_answer"}
    assert after.total(ERRORS, **labels) - before.total(ERRORS, **labels) == 4


def test_rate_limit_waits_add_up(make_client, fake_bybit):
    headers = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": str(SERVER_MS + 400)}
    fake_bybit.script("/v5/position/list", httpx.Response(200, json=envelope({"list": []}), headers=headers))
    fake_bybit.script("/v5/position/list", envelope({"list": []}))
    client = make_client()
    before = scrape()
    client.get_positions(category="linear")
    client.get_positions(category="linear")  # waits 0.4 s (the fake clock's) for the window to reset
    after = scrape()
    name = "ordermanager_exchange_rate_limit_wait_seconds_total"
    assert 0.4 <= after.total(name) - before.total(name) <= 0.41  # the reset and a few ms for the offset's error
