from decimal import Decimal as D

import pytest
from django.core.exceptions import ValidationError

from orders.services.risk import (
    RiskInput,
    exposure_other_symbols,
    order_reduces_position,
    position_size_of,
    risk_check,
)
from orders.services.risk_limits import EffectiveLimits, risk_limits_effective
from tests.orders.factories import RiskLimitFactory
from tests.positions.factories import PositionFactory


def limits(**overrides):
    values = dict(
        symbol="BTCUSDT", source="global", max_position_size=None, max_position_value=D("1000"),
        max_exposure=D("5000"),
        max_order_size_ratio=D("0.5"), global_halted=False, global_reduce_only=False, global_halt_reason="",
        symbol_halted=False, symbol_reduce_only=False, symbol_halt_reason="",
    )
    values.update(overrides)
    return EffectiveLimits(**values)


def order(side="Buy", qty="1", price="100", position="0", exposure="0", balance="10000", resting_qty="0"):
    return RiskInput(symbol="BTCUSDT", side=side, qty=D(qty), price=D(price), position_size=D(position),
                     exposure_other=D(exposure), available_balance=D(balance), resting_qty=D(resting_qty))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"qty": "10"}, None),  # position value 1000 = MAX_POSITION_VALUE exactly
        ({"qty": "10.01"}, "MAX_POSITION_VALUE"),
        ({"qty": "5", "position": "5"}, None),  # 10 after the order → 1000
        ({"qty": "5.01", "position": "5"}, "MAX_POSITION_VALUE"),
        ({"qty": "10", "exposure": "4000"}, None),  # 4000 + 1000 = MAX_EXPOSURE exactly
        ({"qty": "10", "exposure": "4000.01"}, "MAX_EXPOSURE"),
        ({"qty": "10", "balance": "2000"}, None),  # order value 1000 = 0.5 × 2000
        ({"qty": "10", "balance": "1999.99"}, "MAX_ORDER_SIZE_RATIO"),
        ({"side": "Sell", "qty": "5", "position": "20", "balance": "0"}, None),  # reducing: always allowed
    ],
)
def test_limits_at_their_boundaries(kwargs, error):
    if error is None:
        risk_check(order=order(**kwargs), limits=limits())
    else:
        with pytest.raises(ValidationError, match=error):
            risk_check(order=order(**kwargs), limits=limits())


def test_breach_names_the_limit_the_value_and_the_excess():
    with pytest.raises(ValidationError) as exc:
        risk_check(order=order(qty="12"), limits=limits())
    assert exc.value.messages[0] == (
        "risk limit MAX_POSITION_VALUE: position value of BTCUSDT after the order is 1200.00 USDT, "
        "above the limit 1000.00 USDT by 200.00 USDT"
    )


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"global_halted": True, "global_halt_reason": "exchange incident"}, "halted globally \\(exchange incident\\)"),
        ({"symbol_halted": True, "symbol_halt_reason": "position mismatch"}, "halted for BTCUSDT"),
    ],
)
def test_halts_refuse_even_reducing_orders(overrides, match):
    with pytest.raises(ValidationError, match=match):
        risk_check(order=order(side="Sell", qty="1", position="5"), limits=limits(**overrides))


@pytest.mark.parametrize("flag", ["global_reduce_only", "symbol_reduce_only"])
def test_reduce_only_mode_allows_only_reducing_orders(flag):
    risk_check(order=order(side="Sell", qty="5", position="5"), limits=limits(**{flag: True}))
    with pytest.raises(ValidationError, match="reduce-only mode"):
        risk_check(order=order(side="Buy", qty="1", position="5"), limits=limits(**{flag: True}))


@pytest.mark.parametrize(
    ("side", "qty", "position", "expected"),
    [("Sell", "5", "5", True), ("Sell", "6", "5", False), ("Buy", "1", "5", False), ("Buy", "2", "-2", True),
     ("Buy", "3", "-2", False), ("Sell", "1", "0", False)],
)
def test_order_reduces_position(side, qty, position, expected):
    assert order_reduces_position(side=side, qty=D(qty), position_size=D(position)) is expected


@pytest.mark.django_db
def test_effective_limits_prefer_the_symbol_row_and_seed_the_global_row(settings):
    settings.MAX_POSITION_SIZE, settings.MAX_POSITION_VALUE = D("7"), D("777")
    seeded = risk_limits_effective(symbol="BTCUSDT")
    assert (seeded.source, seeded.max_position_size, seeded.max_position_value) == ("global", D("7"), D("777"))
    RiskLimitFactory(symbol="BTCUSDT", max_position_size=D("100"), max_exposure=D("1"), trading_halted=True,
                     halt_reason="manual")
    own = risk_limits_effective(symbol="BTCUSDT")
    assert (own.source, own.max_position_size, own.symbol_halted, own.symbol_halt_reason) == (
        "symbol", D("100"), True, "manual")
    assert own.max_exposure == seeded.max_exposure  # exposure is always the global figure
    assert risk_limits_effective(symbol="ETHUSDT").source == "global"


@pytest.mark.django_db
def test_exposure_sums_other_symbols_at_mark_else_entry_price():
    PositionFactory(symbol="BTCUSDT", size=D("1"), avg_entry_price=D("100"), mark_price=D("110"))
    PositionFactory(symbol="ETHUSDT", size=D("-2"), avg_entry_price=D("50"), mark_price=None)
    PositionFactory(symbol="SOLUSDT", size=D("0"), avg_entry_price=D("50"))
    assert exposure_other_symbols(symbol="XRPUSDT") == D("210")
    assert exposure_other_symbols(symbol="BTCUSDT") == D("100")
    assert position_size_of(symbol="ETHUSDT") == D("-2")
    assert position_size_of(symbol="DOGEUSDT") == D("0")


@pytest.mark.django_db
def test_book_state_reads_limits_positions_and_exposure_in_one_query(settings, django_assert_num_queries):
    from orders.services.risk import book_state_read

    settings.MAX_POSITION_SIZE = D("777")
    RiskLimitFactory(symbol="", max_position_size=D("777"), max_exposure=D("5000"), reduce_only=True,
                     halt_reason="drill")
    RiskLimitFactory(symbol="BTCUSDT", max_position_size=D("100"), trading_halted=True, halt_reason="manual")
    PositionFactory(symbol="BTCUSDT", position_idx=0, size=D("-0.5"))
    PositionFactory(symbol="ETHUSDT", size=D("1"), avg_entry_price=D("100"), mark_price=D("110"))
    PositionFactory(symbol="SOLUSDT", position_idx=2, size=D("2"), avg_entry_price=D("50"), mark_price=None)
    with django_assert_num_queries(1):
        book = book_state_read(symbol="BTCUSDT")
    assert book.sizes == {0: D("-0.5"), 1: D("0"), 2: D("0")}
    assert book.exposure_other == D("210") == exposure_other_symbols(symbol="BTCUSDT")
    assert book.limits == risk_limits_effective(symbol="BTCUSDT")
    assert (book.limits.symbol_halted, book.limits.global_reduce_only, book.limits.max_position_size) == (
        True, True, D("100"))
    assert book_state_read(symbol="SOLUSDT").sizes == {0: D("0"), 1: D("0"), 2: D("2")}


@pytest.mark.django_db
def test_book_state_seeds_the_global_row_on_first_use(settings):
    from orders.models import RiskLimit
    from orders.services.risk import book_state_read

    settings.MAX_EXPOSURE = D("12345")
    assert book_state_read(symbol="BTCUSDT").limits.max_exposure == D("12345")
    assert RiskLimit.objects.get(symbol="").max_exposure == D("12345")


@pytest.mark.django_db
@pytest.mark.parametrize("partially_filled_too", [False, True])
def test_book_state_sees_the_same_open_orders_as_the_cancel_rules(settings, partially_filled_too):
    """The SQL of book_state_read mirrors cancellation.cancel_candidates: every kind of order, both agree."""
    from orders.services.cancellation import cancel_candidates
    from orders.services.risk import book_state_read
    from tests.orders.factories import OrderFactory

    settings.CANCEL_PARTIALLY_FILLED_ORDERS = partially_filled_too
    RiskLimitFactory(symbol="")
    kinds = [
        {"status": "new"}, {"status": "partially_filled"}, {"status": "pending_cancel"}, {"status": "filled"},
        {"status": "new", "time_in_force": "IOC"}, {"status": "new", "time_in_force": "FOK"},
        {"status": "new", "is_external": True}, {"status": "new", "category": "spot"}, {"status": "new", "symbol": "X"},
    ]
    for kind in kinds:
        order = OrderFactory(**kind)
        expected = cancel_candidates(symbol="BTCUSDT").exists()
        assert book_state_read(symbol="BTCUSDT").has_cancel_candidates is expected, kind
        order.delete()
    assert expected is False  # the last kind (another symbol) is not a candidate


# --- what is at stake: units and resting orders (decision 0317) ----------------------------------------------


def test_max_position_size_is_in_base_units_and_counts_resting_orders():
    base = limits(max_position_size=D("2"), max_position_value=None)
    risk_check(order=order(qty="1.5", price="1", resting_qty="0.5"), limits=base)  # 2 BTC: at the limit
    with pytest.raises(ValidationError) as exc:
        risk_check(order=order(qty="1.5", price="1", resting_qty="0.6"), limits=base)
    assert exc.value.messages[0] == (
        "risk limit MAX_POSITION_SIZE: position of BTCUSDT after the order and the resting Buy orders (0.6) is "
        "2.1 (base units), above the limit 2 (base units) by 0.1 (base units)"
    )


def test_resting_orders_count_for_the_value_limit_and_for_exposure():
    with pytest.raises(ValidationError, match="MAX_POSITION_VALUE: position value of BTCUSDT after the order and "
                                              "the resting Buy orders \\(5\\) is 1100.00 USDT"):
        risk_check(order=order(qty="6", resting_qty="5"), limits=limits())
    with pytest.raises(ValidationError, match="MAX_EXPOSURE: total exposure after the order \\(positions and "
                                              "resting orders\\) is 5001.00 USDT"):
        risk_check(order=order(qty="6", resting_qty="4", exposure="4001"), limits=limits())
    # A short that the resting sells would deepen: the sell side grows it.
    with pytest.raises(ValidationError, match="resting Sell orders \\(4\\) is 1100.00 USDT"):
        risk_check(order=order(side="Sell", qty="2", position="-5", resting_qty="4"), limits=limits())


def test_unset_position_limits_do_not_limit():
    no_position_limits = limits(max_position_size=None, max_position_value=None, max_exposure=D("1e9"))
    risk_check(order=order(qty="100", resting_qty="1000", balance="1e6"), limits=no_position_limits)


def _resting(**kwargs):
    from tests.orders.factories import OrderFactory

    return OrderFactory(**kwargs)


@pytest.mark.django_db
def test_exposure_of_other_symbols_counts_their_resting_orders(django_assert_num_queries):
    from orders.services.risk import book_state_read

    RiskLimitFactory(symbol="")
    # ETH: long 1 at mark 110 plus resting buys 2 × 100 → 310; the resting sell of 5 would flip to -390 → 390.
    PositionFactory(symbol="ETHUSDT", size=D("1"), avg_entry_price=D("100"), mark_price=D("110"))
    _resting(symbol="ETHUSDT", side="Buy", qty=D("2"), price=D("100"))
    _resting(symbol="ETHUSDT", side="Sell", qty=D("5"), price=D("100"))
    # SOL, flat: a partially filled buy counts its open 3 of 4 at 20; a market order in flight is valued at the
    # row's mark (here none: entry 0 → the fill price), a pending_cancel or filled order not at all.
    _resting(symbol="SOLUSDT", side="Buy", qty=D("4"), filled_qty=D("1"), price=D("20"), status="partially_filled")
    _resting(symbol="SOLUSDT", side="Buy", qty=D("1"), order_type="Market", time_in_force="IOC", price=None,
             avg_fill_price=D("21"), status="pending_submit")
    _resting(symbol="SOLUSDT", side="Buy", qty=D("9"), price=D("20"), status="pending_cancel")
    _resting(symbol="SOLUSDT", side="Buy", qty=D("9"), filled_qty=D("9"), price=D("20"), status="filled")
    # An external order the book knows counts like ours; one of the signal's own symbol is not "other".
    _resting(symbol="XRPUSDT", side="Sell", qty=D("100"), price=D("0.5"), is_external=True)
    _resting(symbol="BTCUSDT", side="Buy", qty=D("1"), price=D("60000"))
    expected = D("390") + D("60") + D("21") + D("50")
    assert exposure_other_symbols(symbol="BTCUSDT") == expected
    with django_assert_num_queries(1):
        book = book_state_read(symbol="BTCUSDT")
    assert book.exposure_other == expected


@pytest.mark.django_db
def test_book_state_counts_this_symbols_resting_orders_and_what_a_signal_cancels(settings, django_assert_num_queries):
    from orders.services.risk import book_state_read

    settings.CANCEL_PARTIALLY_FILLED_ORDERS = False
    RiskLimitFactory(symbol="")
    _resting(side="Buy", qty=D("1"))  # ours, limit: cancellable
    _resting(side="Buy", qty=D("2"), order_type="Market", time_in_force="GTC", price=None)  # ours, not limit
    _resting(side="Buy", qty=D("4"), is_external=True)  # never a signal's to cancel
    _resting(side="Buy", qty=D("10"), filled_qty=D("2"), status="partially_filled")  # kept: 8 open
    _resting(side="Buy", qty=D("16"), time_in_force="IOC", order_type="Market", price=None)  # awaiting its fill
    _resting(side="Buy", qty=D("32"), position_idx=2, reduce_only=True)  # closes a hedge short: grows nothing
    _resting(side="Sell", qty=D("64"))
    with django_assert_num_queries(1):
        book = book_state_read(symbol="BTCUSDT")
    assert book.resting == {"Buy": D("31"), "Sell": D("64")}
    assert book.cancellable_limit == {"Buy": D("1"), "Sell": D("64")}
    assert book.cancellable_other == {"Buy": D("2"), "Sell": D("0")}

    settings.CANCEL_OPPOSITE_ORDERS_ONLY = False  # every candidate goes first
    assert book.resting_after_cancels(side="Buy", order_type="Limit") == D("28")
    settings.CANCEL_OPPOSITE_ORDERS_ONLY = True  # same-side orders stay, but a market signal cancels limits
    assert book.resting_after_cancels(side="Buy", order_type="Limit") == D("31")
    assert book.resting_after_cancels(side="Buy", order_type="Market") == D("30")

    settings.CANCEL_PARTIALLY_FILLED_ORDERS = True
    assert book_state_read(symbol="BTCUSDT").cancellable_limit["Buy"] == D("9")


@pytest.mark.django_db
def test_a_service_change_beyond_the_column_is_a_validation_error_not_a_data_error():
    from orders.models import RiskLimit
    from orders.services.risk_limit_changes import MSG_TOO_LARGE, MSG_TOO_PRECISE, risk_limit_update

    row = RiskLimitFactory(symbol="")
    for changes, field, message in [
        ({"max_exposure": D("1e20")}, "max_exposure", MSG_TOO_LARGE["max_exposure"]),
        ({"max_position_value": D("Infinity")}, "max_position_value", MSG_TOO_LARGE["max_position_value"]),
        ({"max_position_size": D("1e-19")}, "max_position_size", MSG_TOO_PRECISE),
    ]:
        with pytest.raises(ValidationError) as exc:
            risk_limit_update(risk_limit=row, changes=changes, reason="test")
        assert exc.value.message_dict[field] == [message]
    assert RiskLimit.objects.get(pk=row.pk).max_exposure == D("200000")
