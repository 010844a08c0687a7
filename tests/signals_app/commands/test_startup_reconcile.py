"""process_signals reconciles with the exchange (the real service, against the simulator) before the first signal.

consume_signals does the same before it takes a message: tests/signals_app/e2e/test_startup_e2e.py.
"""

from decimal import Decimal as D

import pytest
from django.core.management import call_command

from orders.models import Order, OrderStatus, ReconciliationRun
from positions.models import Position
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services import signal_processor
from signals_app.services.intake import signal_intake
from tests.signals_app.conftest import signal_message

pytestmark = pytest.mark.django_db


def _finished_startup_runs() -> int:
    return ReconciliationRun.objects.filter(trigger=ReconciliationRun.Trigger.STARTUP).exclude(
        status=ReconciliationRun.Status.RUNNING).count()


def test_the_startup_run_is_finished_before_the_first_signal_is_processed(settings, pipeline, simulator, monkeypatch):
    settings.SIGNAL_BROKER_URL = ""
    seen_at_first_signal = []
    real = signal_processor.signal_process

    def watched(*, signal):
        if not seen_at_first_signal:
            seen_at_first_signal.append(_finished_startup_runs())
        return real(signal=signal)

    monkeypatch.setattr(signal_processor, "signal_process", watched)
    signal_intake(payload=signal_message(confidence=0.95, amount="650"), source="api")
    call_command("process_signals", "--once")
    assert seen_at_first_signal == [1]
    run = ReconciliationRun.objects.get()
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    assert TradingSignal.objects.get().status == SignalStatus.EXECUTED


def test_a_fill_missed_while_stopped_is_booked_before_the_sell_that_needs_it(settings, pipeline, simulator):
    """Our order filled on the exchange while nothing listened: the book has no long. Decided on that book, the
    sell would be refused (ALLOW_SHORT=false); reconciled first, it reduces the long."""
    settings.SIGNAL_BROKER_URL = ""
    bought = Order.objects.create(order_link_id="f" * 32 + "-0", symbol="ETHUSDT", side="Buy", order_type="Market",
                                  time_in_force="IOC", qty=D("0.1"), status=OrderStatus.PENDING_SUBMIT)
    from orders.services.order_executor import order_submit

    order_submit(order=bought)  # acknowledged (new); its fill event never reaches us
    assert not Position.objects.exists()
    signal_intake(payload=signal_message(signal_type="sell", asset="ETHUSDT", amount="350",
                                         metadata={"urgency": True}), source="api")
    call_command("process_signals", "--once")

    signal = TradingSignal.objects.get()
    assert signal.status == SignalStatus.EXECUTED, signal.reason
    bought.refresh_from_db()
    assert bought.status == OrderStatus.FILLED
    sell = Order.objects.get(side="Sell")
    assert (sell.reduce_only, sell.qty) == (True, D("0.1"))
    assert simulator.engine.orders_by_link[sell.order_link_id].status == "Filled"
    # The long was booked by the run (the sell's own fill arrives through the stream, absent here).
    assert Position.objects.get(symbol="ETHUSDT", position_idx=0).size == D("0.1")
