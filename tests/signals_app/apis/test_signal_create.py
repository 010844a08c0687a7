import json
import uuid
from decimal import Decimal as D

import pytest

from signals_app.models import SignalStatus, TradingSignal
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db  # through the project URLconf: GET list and POST intake share the path
URL = "/api/signals/"


def post(client, body):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json")


def test_valid_signal_is_stored_and_201(api_trader_client):
    body = signal_message(amount="1000.25")
    response = post(api_trader_client, body)
    assert response.status_code == 201, response.content
    assert response.json() == {"signal_id": body["signal_id"], "status": "received", "reason": "", "created": True}
    row = TradingSignal.objects.get(signal_id=body["signal_id"])
    assert row.source == "api" and row.amount == D("1000.25")


def test_numbers_are_not_read_through_float(api_trader_client):
    text = json.dumps(signal_message(amount=None)).replace('"amount": null', '"amount": 0.1000000000000000055511')
    assert post(api_trader_client, text).status_code == 400  # 19+ places: refused, not silently rounded
    text = json.dumps(signal_message(amount=None)).replace('"amount": null', '"amount": 100.12345678901')
    sid = json.loads(text)["signal_id"]
    assert post(api_trader_client, text).status_code == 201
    assert TradingSignal.objects.get(signal_id=sid).amount == D("100.12345678901")


def test_duplicate_is_200_and_creates_nothing(api_trader_client):
    body = signal_message()
    post(api_trader_client, body)
    response = post(api_trader_client, body)
    assert response.status_code == 200 and response.json()["created"] is False
    assert TradingSignal.objects.count() == 1


def test_invalid_signal_is_400_with_the_reason_and_stored_rejected(api_trader_client):
    body = signal_message(amount="-3", confidence=7)
    response = post(api_trader_client, body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["code"] == "invalid_signal"
    assert "amount: must be greater than 0, got -3" in payload["message"]
    assert "confidence: must be between 0 and 1" in payload["message"]
    assert payload["extra"] == {"signal_id": body["signal_id"], "stored": True}
    assert TradingSignal.objects.get().status == SignalStatus.REJECTED


def test_malformed_json_is_400_and_stores_nothing(api_trader_client):
    response = post(api_trader_client, b'{"signal_id": ')
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]
    assert not TradingSignal.objects.exists()


def test_anonymous_is_401_and_viewer_is_403(api_client, readonly_staff):
    body = signal_message()
    assert post(api_client(), body).status_code == 401
    assert post(api_client(readonly_staff), body).status_code == 403
    assert not TradingSignal.objects.exists()


def test_warmup_is_recorded_as_skipped(api_trader_client):
    response = post(api_trader_client, signal_message(is_warmup=True, signal_id=str(uuid.uuid4())))
    assert response.status_code == 201 and response.json()["status"] == "skipped"


@pytest.mark.parametrize("body_text", [
    '"strategy_id": "a\\u0000b"',  # NUL in a value
    '"metadata": {"k\\u0000": 1}',  # NUL in a key (jsonb refuses it: this was a 500)
    '"metadata": {"k": "\\udc00"}',  # a lone surrogate (not valid UTF-8)
    '"metadata": {"k": ' + "[" * 600 + "]" * 600 + "}",  # nesting Python cannot store recursively
])
def test_text_or_nesting_the_database_cannot_store_is_400_and_stored_rejected(api_trader_client, body_text):
    body = signal_message()
    body.pop("strategy_id")
    text = json.dumps(body)[:-1] + ", " + body_text + ("" if "strategy_id" in body_text else ', "strategy_id": "s"')
    text += "}"
    response = post(api_trader_client, text)
    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["code"] == "invalid_signal" and payload["extra"] == {"signal_id": body["signal_id"], "stored": True}
    assert "cannot be stored" in payload["message"] or "levels deep" in payload["message"]
    row = TradingSignal.objects.get(signal_id=body["signal_id"])
    assert row.status == SignalStatus.REJECTED and row.reason == payload["message"]
