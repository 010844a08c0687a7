"""Numbers as people read them: never exponent notation, never the column's 18 padding zeros."""

from decimal import Decimal as D

import pytest

from ordermanager.core.formatting import column_text, money_text, number_text, price_text, qty_text

COLUMN = D("1.300000000000000000")  # how NUMERIC(36, 18) gives 1.3 back


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [
        (D("2E+2"), D("1"), "200"),  # what Market Buy 2E+2 XRPUSDT was
        (D("2E+2"), None, "200"),
        (COLUMN, D("0.001"), "1.300"),
        (COLUMN, None, "1.3"),
        (D("0.100000000000000000"), D("0.01"), "0.10"),
        (D("0.005"), D("0.01"), "0.005"),  # more places than the step: shown, never rounded away
        (D("1.5E+3"), D("10"), "1500"),
        (D("0E-18"), D("0.001"), "0.000"),
        (D("-0.25"), D("0.01"), "-0.25"),
        (None, D("0.01"), "—"),
    ],
)
def test_quantities_at_the_step_or_plain(value, step, expected):
    assert qty_text(value, step) == expected


def test_prices_at_the_tick():
    assert price_text(D("64249.700000000000000000"), D("0.10")) == "64249.7"
    assert price_text(D("0.60000000"), D("0.0001")) == "0.6000"
    assert price_text(D("6.4E+4")) == "64000"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D("1000.000000000000000000"), "1000.00"),
        (D("1E+3"), "1000.00"),
        (D("0.352000000000000000"), "0.352"),
        (D("0.000123456789"), "0.00012346"),  # at most 8 places
        (D("-25.06579337"), "-25.06579337"),
        (D("-0.000000001"), "0.00000000"),
        (D("0E-18"), "0.00"),
    ],
)
def test_money_has_two_to_eight_places(value, expected):
    assert money_text(value) == expected


def test_no_text_ever_has_an_exponent_or_eighteen_zeros():
    for value in (D("2E+2"), D("1E-7"), COLUMN, D("123456789012345678.5"), D("1E+17")):
        for text in (qty_text(value), qty_text(value, D("0.001")), money_text(value), number_text(value)):
            assert "E" not in text and "000000000000000000" not in text.split(".")[-1], text


def test_columns_are_shown_by_what_they_hold():
    assert column_text(D("0.030000000000000000"), "exec_fee") == "0.03"
    assert column_text(D("5.000000000000000000"), "realized_pnl") == "5.00"
    assert column_text(COLUMN, "exec_qty") == "1.3"
