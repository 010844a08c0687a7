"""The audit row keeps the exchange's answer next to the request: redacted like the request, cut to a size."""

import json
from decimal import Decimal

import httpx
import pytest

from exchange.bybit import errors as E
from exchange.bybit.retry import RetryPolicy
from exchange.models import ExchangeCall

from .conftest import KEY, SECRET, envelope
from .test_client_edges import CREATE, create
from .test_client_simulator import limit_buy, make_sim_client  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def test_the_answer_is_stored_with_its_size_over_real_http(make_sim_client):  # noqa: F811
    client = make_sim_client()
    ack = limit_buy(client, "resp-1", price="10000.0")

    row = ExchangeCall.objects.get(path=CREATE)
    stored = json.loads(row.response_body)
    assert stored["retCode"] == 0 and stored["result"]["orderId"] == ack.order_id
    assert stored["result"]["orderLinkId"] == "resp-1"
    assert row.response_bytes == len(row.response_body.encode()) and not row.response_truncated
    assert row.params["orderLinkId"] == "resp-1"  # the request, next to it


def test_secrets_and_signatures_in_an_answer_are_redacted_like_the_request(make_client, fake_bybit):
    signature = "ab" * 32
    answer = envelope({"orderId": "1", "orderLinkId": "sig-1-0", "apiKey": "k-123456", "sign": "whatever",
                       "note": f"echo {KEY} {SECRET} {signature}", "nested": [{"token": "t-1"}]})  # fmt: skip
    fake_bybit.script(CREATE, answer)
    create(make_client())

    row = ExchangeCall.objects.get(path=CREATE)
    for secret in (KEY, SECRET, signature, "k-123456", "whatever", "t-1"):
        assert secret not in row.response_body
    stored = json.loads(row.response_body)
    assert stored["result"]["apiKey"] == stored["result"]["sign"] == "***"
    assert stored["result"]["nested"] == [{"token": "***"}]
    assert stored["result"]["note"] == "echo *** *** ***"
    assert stored["result"]["orderId"] == "1"  # the rest as received


def test_a_long_answer_is_cut_to_the_setting_and_the_cut_is_recorded(make_client, fake_bybit, settings):
    settings.EXCHANGE_CALL_RESPONSE_MAX_BYTES = 100
    answer = envelope({"orderId": "1", "orderLinkId": "sig-1-0", "note": "é" * 300})
    raw = json.dumps(answer).encode()
    fake_bybit.script(CREATE, httpx.Response(200, content=raw, headers={"Content-Type": "application/json"}))
    create(make_client())

    row = ExchangeCall.objects.get(path=CREATE)
    assert row.response_truncated and row.response_bytes == len(raw)
    stored = row.response_body.encode()
    assert 97 <= len(stored) <= 100  # cut at a character boundary (é is two bytes)
    assert raw.decode().startswith(row.response_body)


def test_an_error_answer_that_is_not_json_is_stored_scrubbed(make_client, fake_bybit):
    page = f"<html>502 Bad Gateway key={KEY}</html>".encode()
    fake_bybit.script(CREATE, httpx.Response(502, content=page), httpx.Response(502, content=page),
                      httpx.Response(502, content=page), httpx.Response(502, content=page))  # fmt: skip
    fake_bybit.script("/v5/order/realtime", envelope({"list": []}))
    fake_bybit.script("/v5/order/history", envelope({"list": []}))
    client = make_client(retry=RetryPolicy(max_attempts=1))
    with pytest.raises(E.BybitError):
        create(client)

    row = ExchangeCall.objects.filter(path=CREATE).first()
    assert row.http_status == 502 and row.response_body == "<html>502 Bad Gateway key=***</html>"
    assert row.response_bytes == len(page)


def test_no_answer_leaves_no_body(make_client, fake_bybit):
    client = make_client(retry=RetryPolicy(max_attempts=1))
    fake_bybit.script("/v5/order/realtime", httpx.ConnectError("refused"))
    with pytest.raises(E.BybitConnectError):
        client.get_open_orders(category="linear", symbol="BTCUSDT")

    row = ExchangeCall.objects.get(path="/v5/order/realtime")
    assert row.response_bytes is None and row.response_body == "" and not row.response_truncated


def test_the_admin_detail_shows_the_answer(make_client, fake_bybit, client, risk_admin, settings):
    settings.EXCHANGE_CALL_RESPONSE_MAX_BYTES = 60
    fake_bybit.script(CREATE, envelope({"orderId": "9001", "orderLinkId": "sig-1-0"}))
    create(make_client(), price=Decimal("25000.0"))
    row = ExchangeCall.objects.get(path=CREATE)

    client.force_login(risk_admin)
    page = client.get(f"/admin/exchange/exchangecall/{row.pk}/change/").content.decode()
    assert "response" in page and f"{row.response_bytes} bytes received" in page
    assert "cut to the first" in page and "&quot;orderId&quot;:&quot;9001&quot;" in page
