"""Property: any fill sequence, delivered with duplicates and in any order, leaves the stored position
equal to the fold of its fills and to the simulator's own position.

The simulator's matching engine makes the fills (one-way BTCUSDT, hedge ETHUSDT, market orders of
random size and side at moving prices, funding settlements, orders we know and orders we do not);
its private messages are captured in process and replayed into the ingest service in an order and
with repeats chosen by hypothesis.
"""

import json
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.bybit.events import parse_private_message
from exchange.simulator.wire import SimError
from orders.models import Execution, Order
from orders.selectors.validation import positions_recompute_differences
from orders.services.fills import private_message_apply
from positions.models import Position, PositionLedgerEntry
from positions.services.position_math import PositionState, direction_for, fold

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

SYMBOLS = {"BTCUSDT": ("0.001", "65000"), "ETHUSDT": ("0.01", "3500")}  # qty step, start price

step = st.one_of(
    st.tuples(
        st.just("order"),
        st.sampled_from(list(SYMBOLS)),
        st.sampled_from(["Buy", "Sell"]),
        st.integers(min_value=1, max_value=40),  # qty in steps
        st.integers(min_value=-300, max_value=300),  # price move in basis points / 10
        st.booleans(),  # an order we placed (row exists) or one we did not
        st.sampled_from([1, 2]),  # hedge side for ETHUSDT
    ),
    st.tuples(st.just("funding"), st.sampled_from(list(SYMBOLS)), st.sampled_from(["0.0001", "-0.00025"])),
)


def _run_on_simulator(engine, steps) -> list[dict]:
    captured: list[dict] = []
    engine.switch_mode({"category": "linear", "symbol": "ETHUSDT", "mode": 3})
    engine.add_listener(captured.append, faults=False)
    for n, s in enumerate(steps):
        if s[0] == "funding":
            engine.settle_funding(symbol=s[1], rate=s[2])
            continue
        _, symbol, side, steps_qty, move, known, hedge_idx = s
        qty_step, _ = SYMBOLS[symbol]
        price = (engine.prices[symbol] * (1 + D(move) / 100000)).quantize(D("0.1"))
        engine.set_price(symbol, price)
        link = f"prop-{n}"
        idx = hedge_idx if symbol == "ETHUSDT" else 0
        if known:
            Order.objects.create(order_link_id=link, symbol=symbol, side=side, order_type="Market",
                                 qty=D(qty_step) * steps_qty, position_idx=idx)  # fmt: skip
        params = {"category": "linear", "symbol": symbol, "side": side, "orderType": "Market",
                  "qty": str(D(qty_step) * steps_qty), "orderLinkId": link, "positionIdx": idx}  # fmt: skip
        try:
            engine.create_order(params)
        except SimError:  # e.g. below the minimum notional: nothing happened
            Order.objects.filter(order_link_id=link).delete()
    return captured


def _fresh(simulator):
    simulator.reset()
    Execution.objects.all().delete()
    Order.objects.all().delete()
    Position.objects.all().delete()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=24), data=st.data())
def test_any_delivery_order_with_duplicates_gives_the_fold_and_the_simulator_position(simulator, steps, data):
    _fresh(simulator)
    engine = simulator.engine
    messages = _run_on_simulator(engine, steps)
    if not messages:
        return
    repeats = data.draw(st.lists(st.integers(0, len(messages) - 1), max_size=len(messages)), label="repeats")
    delivery = data.draw(st.permutations(list(range(len(messages))) + repeats), label="delivery")

    for index in delivery:
        private_message_apply(message=parse_private_message(json.dumps(messages[index])))

    assert PositionLedgerEntry.objects.count() == Execution.objects.count()  # every fill applied, once
    for position in Position.objects.all():
        rows = Execution.objects.filter(symbol=position.symbol, position_idx=position.position_idx)
        rows = sorted(rows, key=lambda e: (e.exec_time, e.seq or 0, e.exec_id))
        computed = fold(
            [{"exec_type": e.exec_type, "side": e.side, "qty": e.exec_qty, "price": e.exec_price, "fee": e.exec_fee}
             for e in rows],
            direction=direction_for(position.position_idx),
        )  # fmt: skip
        stored = PositionState(position.signed_size, position.avg_entry_price, position.realized_pnl,
                               position.fees_paid, position.funding_paid)  # fmt: skip
        assert stored == computed
        sim = engine.positions.get((position.symbol, position.position_idx))
        sim_size = (sim.size if sim.side == "Buy" else -sim.size) if sim and sim.size else D(0)
        assert position.signed_size == sim_size
        if sim_size:
            # The simulator rounds its average to 8 places at every step; we keep 18.
            assert abs(position.avg_entry_price - sim.avg_price) <= D("1e-7")
        # The simulator's cumRealisedPnl leaves trading fees out (Bybit's counts them); funding is in both.
        assert abs(position.realized_pnl + position.fees_paid - (sim.cum_realised if sim else 0)) <= D("1e-5")
    assert positions_recompute_differences() == []
