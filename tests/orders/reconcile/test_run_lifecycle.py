"""The run row: failures recorded with the reason, startup never raises, dry runs change nothing."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

import orders.reconcile as reconciliation
from orders.models import Execution, Order, OrderStatus, ReconciliationRun
from orders.reconcile import reconcile, reconcile_on_startup
from orders.reconcile.report import Kind, reconcile_run_as_dict
from orders.reconcile.run import INTERRUPTED
from positions.models import Position
from tests.orders.factories import ReconciliationRunFactory
from tests.orders.reconcile.conftest import Stream, books_differences, place

pytestmark = pytest.mark.django_db


def test_an_unreachable_exchange_is_a_failed_run_with_the_reason(sim):
    sim.state.faults.update({"server_error": 1.0})

    run = reconcile(trigger="command")

    assert run.status == ReconciliationRun.Status.FAILED and run.finished_at is not None
    assert "exchange unavailable" in run.error and "/v5/order/realtime" in run.error


def test_startup_never_raises_and_records_the_failure(sim, monkeypatch):
    sim.state.faults.update({"server_error": 1.0})
    run = reconcile_on_startup(wait=0)
    assert run.status == ReconciliationRun.Status.FAILED and run.trigger == "startup"

    def broken(**kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(reconciliation, "reconcile", broken)
    assert reconcile_on_startup(wait=0) is None


def test_a_run_left_running_by_a_dead_process_is_closed_by_the_next(sim):
    dead = ReconciliationRunFactory(status=ReconciliationRun.Status.RUNNING)

    reconcile(trigger="command")

    dead.refresh_from_db()
    assert dead.status == ReconciliationRun.Status.FAILED and dead.error == INTERRUPTED


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"trigger": "cron"}, "trigger"), ({"trigger": "command", "symbol": "btc usdt"}, "symbol")],
)
def test_bad_input_is_refused_before_anything_is_recorded(kwargs, field):
    with pytest.raises(ValidationError) as caught:
        reconcile(**kwargs)
    assert field in caught.value.message_dict
    assert not ReconciliationRun.objects.exists()


def test_a_dry_run_records_the_differences_and_changes_nothing(sim):
    engine = sim.engine
    stream = Stream(engine)
    order = place(price="64000")
    stream.stop()
    engine.set_price("BTCUSDT", "63900")
    engine.create_order({"category": "linear", "symbol": "ETHUSDT", "side": "Buy", "orderType": "Limit",
                         "qty": "0.10", "price": "3000"})  # fmt: skip

    run = reconcile(trigger="command", dry_run=True)

    assert run.dry_run and run.status == ReconciliationRun.Status.UNRESOLVED
    assert {Kind.ORDER_CLOSED, Kind.EXTERNAL_ORDER, Kind.EXECUTIONS_BACKFILLED} <= set(
        run.discrepancies.values_list("kind", flat=True)
    )
    assert all(d.note.startswith("dry run") for d in run.discrepancies.all())
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW
    assert not Execution.objects.exists() and not Position.objects.exclude(size=0).exists()
    assert Order.objects.count() == 1
    assert reconcile(trigger="command").status == ReconciliationRun.Status.SUCCEEDED
    assert books_differences(engine) == []


def test_the_run_as_json_has_counts_and_before_after_with_decimal_strings(sim):
    engine = sim.engine
    stream = Stream(engine)
    order = place(price="64000", qty="0.010")
    stream.stop()
    engine.set_price("BTCUSDT", "63900")

    body = reconcile_run_as_dict(reconcile(trigger="command"))

    assert body["counts"] == {"checked": 2, "updated": 1, "backfilled": 1, "external": 0, "failed": 0,
                              "discrepancies": 2, "unresolved": 0}  # fmt: skip
    closed = next(d for d in body["discrepancies"] if d["kind"] == Kind.ORDER_CLOSED)
    assert closed["order_link_id"] == order.order_link_id
    assert Decimal(closed["before"]["exchange"]["filled_qty"]) == Decimal("0.010")
    assert isinstance(closed["after"]["filled_qty"], str)


def test_executions_are_pulled_from_the_last_run_that_pulled_them_all():
    from datetime import timedelta

    from django.utils import timezone

    from orders.reconcile.executions import MAX_LOOKBACK, WINDOW_OVERLAP, exec_window_start
    from tests.orders.factories import DiscrepancyFactory

    now = timezone.now()

    def start_ms():
        return exec_window_start(category="linear", symbol=None, now=now)

    def run_at(hours_ago, **fields):
        run = ReconciliationRunFactory(**fields)
        ReconciliationRun.objects.filter(pk=run.pk).update(started_at=now - timedelta(hours=hours_ago))
        return run

    assert start_ms() == int((now - MAX_LOOKBACK).timestamp() * 1000)
    run_at(5, status=ReconciliationRun.Status.SUCCEEDED)
    assert start_ms() == int((now - timedelta(hours=5) - WINDOW_OVERLAP).timestamp() * 1000)
    run_at(3, status=ReconciliationRun.Status.UNRESOLVED)  # unresolved, but every pull succeeded: counts
    assert start_ms() == int((now - timedelta(hours=3) - WINDOW_OVERLAP).timestamp() * 1000)
    DiscrepancyFactory(run=run_at(2, status=ReconciliationRun.Status.UNRESOLVED), kind=Kind.LOOKUP_FAILED)
    run_at(1, status=ReconciliationRun.Status.SUCCEEDED, dry_run=True)
    run_at(1, status=ReconciliationRun.Status.SUCCEEDED, symbol="ETHUSDT")  # covered one symbol only
    run_at(1, status=ReconciliationRun.Status.FAILED)
    assert start_ms() == int((now - timedelta(hours=3) - WINDOW_OVERLAP).timestamp() * 1000)
