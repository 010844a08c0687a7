"""Cross-process symbol offers (docs/decisions/0326): the intake's NOTIFY names the stored symbols, every
process offers them to its workers, and a worker that finds an offered symbol held by a sibling leaves the
note the holder reads when it lets go. So a signal stored by another process while this process holds its
symbol is processed when the symbol is let go, not at the next poll.

Two processor processes on PostgreSQL, both polling only every 30 s (anything processed well within that
came from a wake-up): a ``SignalProcessor`` in this process, whose worker holds the symbol, and
``manage.py process_signals`` in a child process (it is offered the symbol too and finds it held by the
other). The signal is stored by a third process (``manage.py send_signal --direct``), so this process
hears of it only by the NOTIFY. The holder's turn is the one the poll used to rescue: it took the symbol on
an offer whose signal was gone (done by the other process meanwhile), read nothing, and let go; the new
signal was stored in between.
"""

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from orders.models import Order, ReconciliationRun
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services import signal_processor
from signals_app.services.intake import notify_payload, notify_symbols
from signals_app.services.signal_processor import SignalProcessor
from tests.signals_app.e2e.harness import ROOT, ConsumerProcess, database_url, wait_until

POLL = 30.0  # both processes' safety-net poll: far beyond every deadline below
SYMBOL = "BTCUSDT"
# Release → the signal's processing begins: the re-offer, a worker's wake-up, the lock and one inbox read.
# Far below the production poll of 0.5 s (and the 30 s poll here).
BOUND = 0.1


@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_signal_stored_while_another_process_holds_its_symbol_is_processed_when_it_lets_go(
        amqp_url, pipeline, simulator, tmp_path, monkeypatch):
    other = ConsumerProcess(amqp_url=amqp_url, queue_name=f"test.signals.{uuid.uuid4().hex[:8]}", simulator=simulator,
                            log_dir=tmp_path, name="other", command="process_signals",
                            extra_env={"SIGNAL_PROCESSOR_POLL_SECONDS": str(POLL), "SIGNAL_PROCESSOR_THREADS": "2"})
    read, let_go = threading.Event(), threading.Event()
    released: list[float] = []
    next_signals = signal_processor._next_signals

    def holding(symbol, limit):
        batch = next_signals(symbol, limit)
        if symbol == SYMBOL and not released:  # the holder's empty read: keep the symbol until told
            read.set()
            assert let_go.wait(30)
            released.append(time.time())  # the symbol is let go right after this read
        return batch

    started: list[float] = []
    process = signal_processor.signal_process

    def processing(*, signal):
        started.append(time.time())
        return process(signal=signal)

    monkeypatch.setattr(signal_processor, "_next_signals", holding)
    monkeypatch.setattr(signal_processor, "signal_process", processing)
    here = SignalProcessor(threads=2, poll_interval=POLL)
    other.start()
    try:
        wait_until(lambda: ReconciliationRun.objects.filter(trigger="startup").exclude(status="running").exists(),
                   timeout=60, what=f"the other process's startup reconciliation\n{other.log_tail()}")
        signal_processor._wake.clear()
        signal_processor._wake.offer([SYMBOL])  # an offer whose signal is gone: the worker takes it, reads nothing
        here.start()
        assert read.wait(20), "the worker never took the offered symbol"
        signal_id = send_signal_elsewhere()
        # The NOTIFY reached this process and was offered: a sibling found the symbol held and left its note.
        wait_until(lambda: SYMBOL in signal_processor._wake._missed, timeout=15, interval=0.01,
                   what="the NOTIFY's symbol offered to a worker here, which found it held")
        let_go.set()
        wait_until(lambda: TradingSignal.objects.get(signal_id=signal_id).status == SignalStatus.EXECUTED,
                   timeout=15, interval=0.01, what="the signal executed, long before a 30 s poll")
    finally:
        let_go.set()
        here.stop()
        here.join(10)
        other.terminate()
    assert Order.objects.filter(order_link_id__startswith=uuid.UUID(signal_id).hex).count() == 1
    # Processed here (the holder's process took the note); the other process tried once, on its NOTIFY, while
    # the symbol was held, and its next look would be its 30 s poll.
    assert started, f"the signal was not processed in the holding process\n{other.log_tail()}"
    latency = started[0] - released[0]
    assert 0 <= latency < BOUND, f"{latency:.3f} s from the holder's release to the signal's processing"


def send_signal_elsewhere() -> str:
    """Store a signal from another process (``manage.py send_signal --direct``): this one hears of it only by
    the inbox NOTIFY."""
    signal_id = str(uuid.uuid4())
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base", "DATABASE_URL": database_url(),
           "SIGNAL_BROKER_URL": "", "LOG_LEVEL": "warning"}
    subprocess.run([sys.executable, "manage.py", "send_signal", "--direct", "--asset", SYMBOL, "--side", "buy",
                    "--amount", "650", "--confidence", "0.95", "--signal-id", signal_id],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    return signal_id


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_notify_from_another_process_hands_its_symbol_to_a_worker_without_an_inbox_search(
        pipeline, simulator, processor_trail):
    trail = processor_trail
    here = SignalProcessor(threads=2, poll_interval=POLL)
    here.start()
    try:
        wait_until(lambda: trail.count(("search", None)) >= 2, timeout=15, what="both workers idle after a first look")
        before = len(trail)
        signal_id = send_signal_elsewhere()
        wait_until(lambda: TradingSignal.objects.get(signal_id=signal_id).status == SignalStatus.EXECUTED,
                   timeout=15, interval=0.01, what="the signal executed, long before a 30 s poll")
    finally:
        here.stop()
        here.join(10)
    # The NOTIFY named the symbol: the worker took it directly (before 0326 a bare NOTIFY made it search).
    assert trail[before] == ("process", signal_id)


def test_the_notify_payload_names_the_symbols_or_is_a_bare_wake_when_too_long():
    assert notify_payload({"ETHUSDT", "BTCUSDT"}) == "BTCUSDT ETHUSDT"
    assert notify_symbols("BTCUSDT ETHUSDT") == ["BTCUSDT", "ETHUSDT"]
    assert notify_symbols("") == []
    many = {f"S{i:05d}USDT" for i in range(1000)}  # 11 bytes each: beyond PostgreSQL's 8,000-byte payload
    assert notify_payload(many) == ""
