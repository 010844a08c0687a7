"""Private events dropped (fault injection) for a while: fills, order updates and funding lost."""

from decimal import Decimal

import pytest

from orders.models import Execution, ReconciliationRun
from orders.reconcile import reconcile
from positions.models import Position
from tests.orders.reconcile.conftest import Stream, books_differences, place

pytestmark = pytest.mark.django_db


def test_half_the_private_events_dropped_then_one_run_catches_up(sim):
    engine = sim.engine
    stream = Stream(engine)
    sim.state.faults.update({"drop_events": 0.5, "seed": 7})
    engine.reseed_event_faults()
    place(order_type="Market", qty="0.050")
    place(symbol="ETHUSDT", order_type="Market", side="Sell", qty="0.50")
    resting = [place(price=str(63000 - 100 * i), qty="0.010") for i in range(6)]
    engine.set_price("BTCUSDT", "62550")  # fills the five resting buys at 62600 and above
    engine.force_fill(order_link_id=resting[5].order_link_id, qty="0.004")
    engine.settle_funding(symbol="BTCUSDT", rate="0.0001")
    stream.pump()
    sim.state.faults.update({"drop_events": 0.0})
    lost = books_differences(engine)
    assert lost, "the fault should have cost the database some events"

    run = reconcile(trigger="schedule")

    assert books_differences(engine) == []
    assert run.status == ReconciliationRun.Status.SUCCEEDED
    assert run.backfilled > 0
    # Funding went through the same rule as live: realized PnL moved, size did not.
    funding = Execution.objects.get(exec_type="Funding", symbol="BTCUSDT")
    btc = Position.objects.get(symbol="BTCUSDT", position_idx=0)
    assert btc.funding_paid == funding.exec_fee and btc.size == Decimal("0.104")
    assert reconcile(trigger="schedule").discrepancies.count() == 0
