"""Continuous reconciliation is on in a real worker process: after its startup run, a fill the
private stream never delivered is booked by the process's own light pass (no manual reconcile)."""

from __future__ import annotations

import uuid

import pytest

from orders.models import OrderStatus, ReconciliationRun
from tests.orders.reconcile.conftest import books_differences, place
from tests.signals_app.e2e.harness import ConsumerProcess, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_running_process_heals_a_dropped_fill_by_itself(sim, tmp_path):
    engine = sim.engine
    order = place(price="64000", qty="0.010")  # acknowledged; its events are never played into the book
    proc = ConsumerProcess(amqp_url="", queue_name=f"test.continuous.{uuid.uuid4().hex[:8]}", simulator=sim,
                           log_dir=tmp_path, command="process_signals", threads=1,
                           extra_env={"SIGNAL_BROKER_URL": "", "RECONCILE_LIGHT_INTERVAL": "1",
                                      "RECONCILE_SETTLE_SECONDS": "0"})  # fmt: skip
    try:
        proc.start()
        wait_until(lambda: ReconciliationRun.objects.filter(trigger="startup").exclude(status="running").exists(),
                   timeout=60, what=f"the startup run\n{proc.log_tail()}")  # fmt: skip
        engine.set_price("BTCUSDT", "63900")  # now the resting buy fills, after the startup run
        wait_until(lambda: books_differences(engine) == [], timeout=60,
                   what=f"the light pass to book the fill\n{proc.log_tail()}")  # fmt: skip
        assert proc.terminate() == 0, proc.log_tail()
    finally:
        if proc.alive():
            proc.kill9()
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    fixed = ReconciliationRun.objects.get(trigger=ReconciliationRun.Trigger.LIGHT, symbol="BTCUSDT")
    assert fixed.discrepancies.exists()
