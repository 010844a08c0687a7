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
        ({"amount": "ten"}, "amount: must be a decimal number in JSON notation, 'ten' is not a decimal number"),
        ({"amount": "NaN"}, "amount: must be a decimal number in JSON notation, 'NaN' is not a decimal number "
                            "(NaN and Infinity are not numbers here)"),
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


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1_000", "digit separators '_' are not allowed"),
        ("\uff11\uff10\uff10\uff10", "only ASCII digits 0-9 are allowed"),  # fullwidth 1000
        ("\u0661\u0660\u0660\u0660", "only ASCII digits 0-9 are allowed"),  # Arabic-Indic 1000
        ("+5", "a leading '+' is not allowed"),
        (" 5 ", "surrounding whitespace is not allowed"),
        ("5\n", "surrounding whitespace is not allowed"),
        ("NaN", "NaN and Infinity are not numbers here"),
        ("Infinity", "NaN and Infinity are not numbers here"),
        ("-inf", "NaN and Infinity are not numbers here"),
        ("1.", "a digit is required after the decimal point"),
        (".5", "a digit is required before the decimal point"),
        ("1,000", "use '.' as the decimal point"),
        ("0100", "leading zeros are not allowed"),
        ("", "empty"),
    ],
)
def test_decimal_strings_must_be_written_as_json_numbers(text, why):
    # Decimal(text.strip()) read all of these (1_000 was traded as 1,000 USDT): each is refused with its reason.
    for place, overrides in (
        ("amount", {"amount": text}),
        ("market_data_snapshot.price", {"market_data_snapshot": {"price": text}}),
        ("market_data_snapshot.spread", {"market_data_snapshot": {"price": "1", "spread": text}}),
        ("market_data_snapshot.volume_24h", {"market_data_snapshot": {"price": "1", "volume_24h": text}}),
    ):
        reason = reason_of(valid(**overrides))
        assert reason.startswith(f"{place}: must be a decimal number in JSON notation, {text!r} is not a decimal")
        assert why in reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", D("1000")), ("0.5", D("0.5")), ("1000.00", D("1000.00")), ("1e3", D("1000")), ("2.5E-1", D("0.25"))],
)
def test_decimal_strings_in_json_notation_are_read_exactly(text, expected):
    parsed = signal_parse(valid(amount=text, market_data_snapshot={"price": text, "spread": "0"}))
    assert parsed.amount == expected and parsed.snapshot_price == expected and parsed.snapshot_spread == 0


def test_a_json_number_is_still_read_straight_to_decimal():
    text = json.dumps(valid(amount=None)).replace('"amount": null', '"amount": 1E+3')
    assert signal_parse(text.encode()).amount == D("1000")


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
