from decimal import Decimal

import pytest

from ordermanager.env import ConfigError, env_bool, env_choice, env_decimal, env_int, env_money


def test_decimal_is_read_from_text_without_float(monkeypatch):
    monkeypatch.setenv("X_RATIO", "0.1")

    assert env_decimal("X_RATIO", "0", minimum="0", maximum="1") == Decimal("0.1")


def test_decimal_bounds_are_inclusive(monkeypatch):
    monkeypatch.setenv("X_RATIO", "1")

    assert env_decimal("X_RATIO", "0", minimum="0", maximum="1") == Decimal("1")


def test_exclusive_minimum_refuses_the_bound(monkeypatch):
    monkeypatch.setenv("X_SIZE", "0")

    with pytest.raises(ConfigError, match="X_SIZE='0' is out of range: must be greater than 0"):
        env_decimal("X_SIZE", "1", minimum="0", exclusive_minimum=True)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("On", True), ("0", False), ("no", False)])
def test_bool_accepts_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)

    assert env_bool("X_FLAG", not expected) is expected


def test_int_default_when_unset(monkeypatch):
    monkeypatch.delenv("X_N", raising=False)

    assert env_int("X_N", 7, minimum=1) == 7


def test_choice_is_case_insensitive(monkeypatch):
    monkeypatch.setenv("X_ENV", "TestNet")

    assert env_choice("X_ENV", "mainnet", ("mainnet", "testnet")) == "testnet"


def test_money_absent_is_the_default_and_empty_is_no_limit_when_optional(monkeypatch):
    monkeypatch.delenv("X_LIMIT", raising=False)
    assert env_money("X_LIMIT", "50000", unit="USDT", optional=True) == Decimal("50000")
    assert env_money("X_LIMIT", None, unit="base units", optional=True) is None
    monkeypatch.setenv("X_LIMIT", "")
    assert env_money("X_LIMIT", "50000", unit="USDT", optional=True) is None
    assert env_money("X_LIMIT", "50000", unit="USDT") == Decimal("50000")  # not optional: empty is the default
    monkeypatch.setenv("X_LIMIT", "999999999999999999.999999999999999999")  # the largest storable amount
    assert env_money("X_LIMIT", "1", unit="USDT") == Decimal("999999999999999999.999999999999999999")
