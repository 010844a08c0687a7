import json
import uuid
from decimal import Decimal as D
from pathlib import Path

import pytest

from signals_app.contract import MAX_MESSAGE_BYTES, SignalInvalid, signal_parse

# Copies of ../shared/contracts/examples, so CI needs nothing outside the repository.
EXAMPLES = Path(__file__).resolve().parent / "contract_examples"
SID = "0b7f3c2e-6a51-4c1d-9a0e-3f1d2b7c9e10"


def valid(**overrides):
    message = {
        "signal_id": SID, "signal_type": "buy", "asset": "BTCUSDT", "amount": "1000.00", "confidence": 0.72,
        "timestamp": "2026-11-23T10:15:00.123Z", "strategy_id": "momentum_v1",
        "market_data_snapshot": {"price": "64250.5", "spread": "1.5"},
    }
    for key, value in overrides.items():
        if value is ...:
            message.pop(key, None)
        else:
            message[key] = value
    return message


def reason_of(payload) -> str:
    with pytest.raises(SignalInvalid) as exc:
        signal_parse(payload)
    return exc.value.reason


@pytest.mark.parametrize("name", ["limit_buy.json", "urgent_sell.json"])
def test_contract_examples_parse(name):
    parsed = signal_parse((EXAMPLES / name).read_bytes())
    assert parsed.amount > 0 and isinstance(parsed.amount, D)


def test_numbers_go_straight_to_decimal_without_float():
    text = json.dumps(valid(amount=None)).replace('"amount": null', '"amount": 1000.000000000000000001')
    parsed = signal_parse(text.encode())
    assert parsed.amount == D("1000.000000000000000001")  # a float would have lost the last digit
    assert parsed.confidence == D("0.72") and parsed.snapshot_price == D("64250.5")


def test_optional_fields_and_defaults():
    parsed = signal_parse(valid(market_data_snapshot=None, metadata={"urgency": True}, is_warmup=True,
                                trace_id="abc", model_version=None))
    assert (parsed.snapshot_price, parsed.snapshot_spread, parsed.urgency, parsed.is_warmup) == (None, None, True, True)
    assert (parsed.trace_id, parsed.model_version) == ("abc", "")
    assert parsed.signal_id == uuid.UUID(SID)


def test_confidence_is_rounded_to_its_column():
    assert signal_parse(valid(confidence=D("0.123456789012345"))).confidence == D("0.1234567890")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"amount": ...}, "amount: required field is missing"),
        ({"amount": "-5"}, "amount: must be greater than 0, got -5"),
        ({"amount": 0}, "amount: must be greater than 0, got 0"),
        ({"amount": "ten"}, "amount: must be a decimal number (JSON number or string), got 'ten'"),
        ({"amount": "NaN"}, "amount: must be a finite number, got 'NaN'"),
        ({"amount": "1e30"}, "amount: 1E+30 is above the maximum 1000000000"),
        ({"amount": True}, "amount: must be a decimal number"),
        ({"amount": "0.0000000000000000001"}, "amount: more than 18 decimal places"),
        ({"confidence": "0.5"}, "confidence: must be a JSON number between 0 and 1, got a string"),
        ({"confidence": 1.5}, "confidence: must be between 0 and 1, got '1.5'"),
        ({"confidence": -0.01}, "confidence: must be between 0 and 1"),
        ({"signal_type": "hold"}, "signal_type: must be one of buy, sell, got 'hold'"),
        ({"signal_type": "BUY"}, "signal_type: must be one of buy, sell"),
        ({"asset": "btc-usdt"}, "asset: must be an exchange symbol"),
        ({"asset": 5}, "asset: must be an exchange symbol"),
        ({"timestamp": "yesterday"}, "timestamp: 'yesterday' is not an ISO 8601 date-time"),
        ({"timestamp": "2026-11-23T10:15:00"}, "timestamp: '2026-11-23T10:15:00' has no timezone"),
        ({"strategy_id": ""}, "strategy_id: length must be 1-100 characters, got 0"),
        ({"strategy_id": "x" * 101}, "strategy_id: length must be 1-100 characters, got 101"),
        ({"is_warmup": "yes"}, "is_warmup: must be true or false, got a string"),
        ({"market_data_snapshot": {"spread": "1"}}, "market_data_snapshot.price: required field is missing"),
        ({"market_data_snapshot": {"price": "0"}}, "market_data_snapshot.price: must be greater than 0"),
        ({"market_data_snapshot": {"price": "1", "spread": "-1"}}, "market_data_snapshot.spread: must not be negative"),
        ({"market_data_snapshot": "64000"}, "market_data_snapshot: must be an object or null, got a string"),
        ({"metadata": {"urgency": 1}}, "metadata.urgency: must be true or false, got a number"),
        ({"trace_id": "t" * 65}, "trace_id: length must be 0-64 characters, got 65"),
    ],
)
def test_each_invalid_field_is_named_with_what_is_wrong(overrides, expected):
    with pytest.raises(SignalInvalid) as exc:
        signal_parse(valid(**overrides))
    assert expected in exc.value.reason
    assert exc.value.signal_id == uuid.UUID(SID)  # still usable: the row can be stored as rejected


def test_all_problems_are_reported_at_once():
    reason = reason_of(valid(amount="-1", asset="x", confidence=2))
    assert reason.count(";") == 2 and "amount" in reason and "asset" in reason and "confidence" in reason


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "message is not valid JSON"),
        (b'{"amount": NaN}', "message is not valid JSON: NaN is not a number JSON allows"),
        (b'{"amount": Infinity}', "Infinity is not a number JSON allows"),
        (b"[1, 2]", "message must be a JSON object, got an array"),
        (b"\xff\xfe", "message is not UTF-8"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "above the 65536-byte limit"),
    ],
)
def test_unusable_messages_have_no_signal_id(payload, expected):
    with pytest.raises(SignalInvalid) as exc:
        signal_parse(payload)
    assert expected in exc.value.reason
    assert exc.value.signal_id is None


@pytest.mark.parametrize("bad_id", ["not-a-uuid", 12345, None])
def test_bad_signal_id(bad_id):
    with pytest.raises(SignalInvalid) as exc:
        signal_parse(valid(signal_id=bad_id))
    assert exc.value.signal_id is None and "signal_id" in exc.value.reason


def test_huge_integer_literal_is_rejected_not_crashing():
    text = json.dumps(valid(amount=None)).replace('"amount": null', '"amount": ' + "9" * 5000)
    assert "amount:" in reason_of(text)


@pytest.mark.parametrize("text, reason", [
    # json.dumps writes the escapes as the sender's library would: \u0000 and a lone \ud800.
    (json.dumps(valid(strategy_id="mom\u0000v1")), "strategy_id: the text contains the NUL character (\\u0000)"),
    (json.dumps(valid(metadata={"a\u0000b": 1})), "metadata.a\\u0000b: the key contains the NUL character (\\u0000)"),
    (json.dumps(valid(metadata={"tags": ["x", "\ud800"]})),
     "metadata.tags[1]: the text contains an unpaired UTF-16 surrogate (\\ud800)"),
])
def test_text_postgresql_cannot_store_is_refused_with_its_place(text, reason):
    with pytest.raises(SignalInvalid) as exc:
        signal_parse(text.encode())
    assert reason + ", which cannot be stored" in exc.value.reason
    assert exc.value.signal_id == uuid.UUID(SID)  # still stored as rejected, with a clean copy of the message
    stored = json.dumps(exc.value.data)
    assert "\\u0000" not in stored and "\\ud800" not in stored and "\\ufffd" in stored


def test_nesting_deeper_than_the_limit_is_refused_and_the_top_level_kept():
    from signals_app.contract import MAX_NESTING

    deep = json.dumps(valid())[:-1] + ', "metadata": {"x": ' + "[" * 900 + "]" * 900 + "}}"
    with pytest.raises(SignalInvalid) as exc:
        signal_parse(deep.encode())
    assert exc.value.reason == f"message nests objects/arrays more than {MAX_NESTING} levels deep"
    assert exc.value.signal_id == uuid.UUID(SID) and "metadata" not in exc.value.data
    nested = {"metadata": {"x": [[[]]]}}
    assert signal_parse(json.dumps(valid(**nested)).encode()).raw["metadata"] == nested["metadata"]
