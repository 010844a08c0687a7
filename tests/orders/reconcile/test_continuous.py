"""Continuous reconciliation: light passes, in-flight lookups, backfill marks, roll-up of empty passes.

Real PostgreSQL and the simulator over HTTP; the private stream is played into the
fill path (or stopped, so that the exchange moves on without us).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from exchange.models import ExchangeCall
from orders.models import BackfillMark, Order, OrderStatus, ReconcileLease, ReconciliationRun
from orders.reconcile import continuous as rc
from orders.reconcile.backfill_marks import ALL_ACTIVE, backfill_mark
from tests.orders.reconcile.conftest import Stream, backdate, books_differences, place
from tests.signals_app.e2e.harness import wait_until

pytestmark = pytest.mark.django_db

LIGHT = ReconciliationRun.Trigger.LIGHT


@pytest.fixture(autouse=True)
def _clean(settings):
    settings.RECONCILE_INFLIGHT_SECONDS = 30
    settings.RECONCILE_TARGETED_MAX_SYMBOLS = 5
    BackfillMark.objects.all().delete()  # other tests' threads may have committed some
    rc._confirmed.clear()
    yield
    rc._confirmed.clear()


def test_light_pass_books_a_dropped_fill_and_rolls_up_empty_passes(sim):
    engine = sim.engine
    stream = Stream(engine)
    resting = place(price="64000", qty="0.010")
    other = place(symbol="ETHUSDT", price="3000", qty="0.10")
    stream.pump()

    first = rc.light_pass()
    second = rc.light_pass()
    assert first.suspects == {} and second.suspects == {}
    assert first.rollup.pk == second.rollup.pk  # one row for both uneventful passes
    rollup = ReconciliationRun.objects.get(pk=first.rollup.pk)
    assert rollup.trigger == LIGHT and rollup.passes == 2 and rollup.status == ReconciliationRun.Status.SUCCEEDED
    assert rollup.last_pass_at is not None and rollup.symbol == ""

    stream.stop()  # the fill's events are lost
    engine.set_price("BTCUSDT", "63900")  # the resting buy fills
    assert books_differences(engine)

    found = rc.light_pass()  # no manual reconcile: the pass finds the symbol and settles it

    assert set(found.suspects) == {("linear", "BTCUSDT")}
    assert books_differences(engine) == []
    resting.refresh_from_db()
    assert resting.status == OrderStatus.FILLED and resting.filled_qty == Decimal("0.010")
    other.refresh_from_db()
    assert other.status == OrderStatus.NEW
    [run] = found.runs
    assert run.trigger == LIGHT and run.symbol == "BTCUSDT" and run.discrepancies.exists()
    assert found.rollup is None

    after = rc.light_pass()  # nothing left: a new roll-up row after the run that found something
    assert after.suspects == {} and after.rollup.pk not in (rollup.pk, run.pk)
    assert list(ReconciliationRun.objects.order_by("id").values_list("trigger", "symbol", "passes")) == [
        (LIGHT, "", 2), (LIGHT, "BTCUSDT", 1), (LIGHT, "", 1),
    ]  # fmt: skip


def test_light_pass_finds_an_order_status_the_stream_never_delivered(sim):
    engine = sim.engine
    stream = Stream(engine)
    order = place(price="60000", qty="0.020")
    stream.pump()
    stream.stop()
    engine.cancel_order({"category": "linear", "symbol": "BTCUSDT", "orderLinkId": order.order_link_id})

    result = rc.light_pass()

    assert ("linear", "BTCUSDT") in result.suspects
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED
    assert books_differences(engine) == []


def test_quiet_pending_order_is_looked_up_by_order_link_id(sim):
    """The create reached the exchange but its answer was lost: the row stays pending_submit, and
    no event comes. After RECONCILE_INFLIGHT_SECONDS the in-flight pass looks it up and settles it."""
    from exchange.bybit.client import get_client

    order = place(price="60000", qty="0.010", submit=False)
    get_client().create_order(category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit",
                              qty=Decimal("0.010"), price=Decimal("60000"), time_in_force="GTC",
                              order_link_id=order.order_link_id)  # fmt: skip
    young = rc.inflight_pass()  # it is not quiet yet: nothing looked up
    assert young.lookups == 0 and young.suspects == {}
    backdate(order, 120)
    lookups_before = ExchangeCall.objects.filter(order_link_id=order.order_link_id, method="GET").count()

    result = rc.inflight_pass()

    assert result.lookups == 1
    assert ExchangeCall.objects.filter(order_link_id=order.order_link_id, method="GET").count() > lookups_before
    assert ("linear", "BTCUSDT") in result.suspects
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW and order.order_id  # adopted from the exchange, not re-sent
    with engine_lock(sim) as engine:
        assert sum(1 for o in engine.orders.values() if o.order_link_id == order.order_link_id) == 1


def test_a_quiet_order_the_exchange_confirms_is_not_looked_up_every_pass(sim):
    stream = Stream(sim.engine)
    order = place(price="60000", qty="0.010")
    stream.pump()
    backdate(order, 120)

    first = rc.inflight_pass()
    second = rc.inflight_pass()

    assert first.lookups == 1 and first.suspects == {} and first.runs == []
    assert second.lookups == 0  # confirmed a moment ago: the next look is later (and the light pass lists it)
    assert not rc._inflight_work_exists()


def test_a_long_resting_order_is_left_to_the_light_listing(sim):
    stream = Stream(sim.engine)
    order = place(price="60000", qty="0.010")
    stream.pump()
    backdate(order, 3600)  # rests for an hour: it was looked up when it turned quiet

    assert rc.inflight_pass().lookups == 0
    assert rc.light_pass().suspects == {}  # the listing (one request for all) says it is still open


def test_marked_symbols_get_a_targeted_backfill_and_the_mark_goes(sim):
    engine = sim.engine
    stream = Stream(engine)
    place(order_type="Market", qty="0.020")
    place(symbol="ETHUSDT", price="3000", qty="0.10")
    stream.pump()
    stream.stop()
    engine.force_fill(order_link_id=Order.objects.get(symbol="ETHUSDT").order_link_id, qty="0.04")
    backfill_mark([("linear", ALL_ACTIVE)], reason="test: gateway reconnected")
    assert rc._inflight_work_exists()

    result = rc.inflight_pass()

    assert ("linear", "ETHUSDT") in result.suspects and ("linear", "BTCUSDT") in result.suspects
    assert books_differences(engine) == []
    assert not BackfillMark.objects.exists()
    assert [r.symbol for r in result.runs] == ["ETHUSDT"]  # BTCUSDT had nothing missing: folded into the roll-up


def test_leases_let_one_caller_take_each_due_pass(settings, sim):
    settings.RECONCILE_LIGHT_INTERVAL = 60
    assert rc.lease_claim("light", 60) is False  # a new lease is first due one interval from now
    due = ReconcileLease.objects.get(name="light").due_at
    ReconcileLease.objects.filter(name="light").update(due_at=due - timedelta(minutes=2))
    assert rc.lease_claim("light", 60) is True
    assert rc.lease_claim("light", 60) is False


class engine_lock:  # noqa: N801 - a tiny context manager used like a function
    def __init__(self, sim):
        self.engine = sim.engine

    def __enter__(self):
        self.engine.lock.acquire()
        return self.engine

    def __exit__(self, *exc):
        self.engine.lock.release()


@pytest.mark.django_db(transaction=True)
def test_gateway_reconnect_marks_active_symbols_and_the_pass_backfills_them(sim, settings):
    from orders import consumers
    from tests.orders.test_consumers import KEY, communicator, run

    settings.WS_GATEWAY_API_KEY = KEY
    consumers.CONNECTIONS.__init__()
    consumers.CONNECTIONS.ever = True  # this process already had a gateway connection
    engine = sim.engine
    stream = Stream(engine)
    order = place(price="64000", qty="0.010")
    stream.pump()

    async def connect_and_leave():
        ws = communicator()
        await ws.connect()
        await ws.send_json_to({"op": "ping"})
        await ws.receive_json_from()
        await ws.disconnect()

    run(connect_and_leave)
    assert not BackfillMark.objects.exists()  # a connection that was never lost asks for nothing
    stream.stop()
    engine.set_price("BTCUSDT", "63900")  # fills while the gateway is away: its events never reach us
    run(connect_and_leave)  # the gateway comes back

    # The mark is written at connect; if the database is busy at that instant (SQLite's table lock against the
    # link's heartbeat), the gateway backlog keeps it and writes it moments later (0414): wait for it, bounded.
    mark = wait_until(BackfillMark.objects.first, timeout=10, what="the reconnect's backfill mark")
    assert BackfillMark.objects.count() == 1
    assert mark.symbol == ALL_ACTIVE and "reconnected" in mark.reason
    result = rc.inflight_pass()

    assert ("linear", "BTCUSDT") in result.suspects
    assert books_differences(engine) == []
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert not BackfillMark.objects.exists()
