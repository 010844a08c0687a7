"""Bybit's decimal and time strings are read exactly as the JSON number grammar writes them, nothing else."""

from decimal import Decimal as D

import pytest

from exchange.bybit.events import parse_private_message
from exchange.bybit.types import ExecutionInfo, InstrumentInfo, MalformedPayload, OrderInfo, dec, ms
from tests.positions import bybit_messages as bm

# Decimal() reads every one of these; Bybit writes none of them.
LOOSE = ["1_000", "\uff11\uff10", "\u0661\u0660", "+5", " 5", "5 ", "NaN", "Infinity", "-inf", "1.", ".5", "1,5"]


@pytest.mark.parametrize("text", LOOSE)
def test_decimal_text_outside_the_json_number_grammar_is_malformed(text):
    with pytest.raises(MalformedPayload, match=r"^execPrice: .* is not a decimal number \("):
        dec(text, name="execPrice")


@pytest.mark.parametrize(("text", "expected"), [("0.010", D("0.010")), ("-25.06579337", D("-25.06579337")),
                                                ("1e-7", D("1E-7")), ("0", D(0)), (5, D(5))])  # fmt: skip
def test_decimal_text_in_json_notation_is_exact(text, expected):
    value = dec(text, name="x")
    assert value == expected and str(value) == str(expected)


def test_a_text_read_again_from_the_cache_is_the_same_value_and_a_refused_one_stays_refused():
    # Decimal texts are cached per process (docs/decisions/0424): the second read is the first's value, exactly
    # (scale kept), under any field name; a malformed text is never cached, so it is refused every time.
    first, again = dec("64000.50", name="execPrice"), dec("64000.50", name="markPrice")
    assert again is first and str(again) == "64000.50"
    for name in ("execQty", "execQty"):
        with pytest.raises(MalformedPayload, match=rf"^{name}: '1_000' is not a decimal number"):
            dec("1_000", name=name)
    assert dec("", name="closedSize") is None


def test_bybit_empty_fields_keep_their_default():
    # Bybit sends "" for empty values (closedSize, avgPrice with no fills, ...): documented, not malformed.
    assert dec("", name="closedSize") is None
    assert dec("", name="cumExecFee", default=D(0)) == 0
    order = OrderInfo.from_api(bm.order_item(order_link_id="a", order_id="b", status="New", avg_price=""))
    assert order.avg_price is None


@pytest.mark.parametrize("text", ["\u0661\u0667\u0666\u0667", " 1767225600000", "1_767_225_600_000", "+1", "-1", "1.5"])
def test_millisecond_times_are_ascii_digits_only(text):
    with pytest.raises(MalformedPayload, match="is not a millisecond timestamp"):
        ms(text, name="execTime")


def test_a_loose_number_anywhere_in_a_private_message_refuses_the_message():
    for field in ("execQty", "execPrice", "execFee", "execValue", "closedSize"):
        item = {**bm.execution_item(), field: " 1"}
        with pytest.raises(MalformedPayload, match=rf"data\[0\]: {field}: ' 1' is not a decimal number"):
            parse_private_message(bm.message("execution", [item]))
    position = {"symbol": "BTCUSDT", "positionIdx": 0, "side": "Buy", "size": "1_0", "entryPrice": "1"}
    with pytest.raises(MalformedPayload, match="size: '1_0' is not a decimal number"):
        parse_private_message(bm.message("position", [position]))


def test_rest_answers_are_read_as_strictly():
    item = {"symbol": "BTCUSDT", "priceFilter": {"tickSize": "+0.10"},
            "lotSizeFilter": {"qtyStep": "0.001", "maxOrderQty": "100", "minOrderQty": "0.001"}}  # fmt: skip
    with pytest.raises(MalformedPayload, match="tickSize: '\\+0.10' is not a decimal number"):
        InstrumentInfo.from_api(item)
    with pytest.raises(MalformedPayload, match="execQty is missing"):
        ExecutionInfo.from_api({k: v for k, v in bm.execution_item().items() if k != "execQty"})
