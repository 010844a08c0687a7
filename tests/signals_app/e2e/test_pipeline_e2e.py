"""End to end: RabbitMQ → consume_signals (child processes) → PostgreSQL inbox → processor → the simulator.

Every run checks the three properties the pipeline exists for: every accepted signal ends terminal (nothing
lost), the simulator's orders and ours match one to one (never twice), and each symbol's orders reached the
exchange in the order its signals were published (per-symbol FIFO).
"""

import json
import random
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from kombu import Exchange, Queue

from orders.models import Order, OrderStatus
from orders.services.signal_orders import ACKNOWLEDGED
from signals_app.amqp import REASON_HEADER
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.signal_processor import UNFINISHED
from tests.signals_app.e2e.harness import (
    Broker,
    ConsumerProcess,
    random_signal,
    scaled,
    twenty_symbols,
    wait_until,
)

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLES = Path(__file__).resolve().parents[1] / "contract_examples"


@pytest.fixture
def e2e(amqp_url, simulator, tmp_path):
    queue_name = f"test.signals.{uuid.uuid4().hex[:10]}"
    broker = Broker(amqp_url, queue_name)
    consumers: list[ConsumerProcess] = []

    def consumer(name="consumer", **kwargs) -> ConsumerProcess:
        proc = ConsumerProcess(amqp_url=amqp_url, queue_name=queue_name, simulator=simulator, log_dir=tmp_path,
                               name=name, **kwargs)
        consumers.append(proc)
        return proc

    with twenty_symbols(simulator) as symbols:
        prices = {s: simulator.engine.prices[s] for s in symbols}
        yield type("E2E", (), {"broker": broker, "consumer": consumer, "symbols": symbols, "prices": prices,
                               "queue": queue_name, "simulator": simulator})
        for proc in consumers:
            if proc.alive():
                proc.kill9()
    broker.close()


def wait_all_terminal(expected: int, consumers, timeout: float):
    def done():
        for proc in consumers:
            assert proc.alive(), f"consumer died:\n{proc.log_tail()}"
        total = TradingSignal.objects.count()
        return total >= expected and not TradingSignal.objects.filter(status__in=UNFINISHED).exists()

    wait_until(done, timeout=timeout, interval=0.2, what=f"{expected} terminal signals")


def assert_exchange_matches_db(simulator) -> dict[str, list[str]]:
    """One to one between the simulator's orders and our acknowledged ones; returns link ids per symbol in
    the order the exchange received them."""
    engine = simulator.engine
    with engine.lock:
        sim = dict(engine.orders_by_link)
        received = sorted(engine.orders.values(), key=lambda o: o.n)
        assert len(engine.orders) == len(engine.orders_by_link), "an orderLinkId reached the exchange twice"
    ours = {o.order_link_id: o for o in Order.objects.all()}
    placed = {link for link, o in ours.items() if o.status in ACKNOWLEDGED}
    assert set(sim) == placed, (set(sim) ^ placed)
    assert not Order.objects.filter(status=OrderStatus.PENDING_SUBMIT).exists()
    for link, sim_order in sim.items():
        order = ours[link]
        assert (order.order_id, order.qty, order.side, order.symbol) == (
            sim_order.order_id, sim_order.qty, sim_order.side, sim_order.symbol)
    per_symbol = defaultdict(list)
    for sim_order in received:
        per_symbol[sim_order.symbol].append(sim_order.order_link_id)
    return per_symbol


def assert_per_symbol_fifo(per_symbol: dict[str, list[str]], published: list[str]) -> None:
    index = {uuid.UUID(sid).hex: i for i, sid in enumerate(published)}
    for symbol, links in per_symbol.items():
        positions = [index[link.split("-")[0]] for link in links]
        assert positions == sorted(positions), f"{symbol} orders reached the exchange out of publish order"
    rank = {sid: i for i, sid in enumerate(published)}
    by_symbol = defaultdict(list)
    for signal_id, asset in TradingSignal.objects.order_by("id").values_list("signal_id", "asset"):
        if str(signal_id) in rank:
            by_symbol[asset].append(rank[str(signal_id)])
    for symbol, ranks in by_symbol.items():
        assert ranks == sorted(ranks), f"{symbol} signals entered the inbox out of publish order"


def test_contract_examples_and_random_signals_over_twenty_symbols(e2e, amqp_url):
    rng = random.Random(500)
    events_queue = Queue(f"{e2e.queue}.events.all", Exchange(f"{e2e.queue}.events", type="topic", durable=True),
                         routing_key="#", auto_delete=True)
    events_queue.bind(e2e.broker.conn.default_channel).declare()
    examples = [json.loads((EXAMPLES / name).read_text()) for name in ("limit_buy.json", "urgent_sell.json")]
    count = scaled(500)
    # The first 20 cover every symbol once, the rest are random.
    bodies = examples + [random_signal(rng, e2e.symbols, e2e.prices, **({"asset": e2e.symbols[i]} if i < 20 else {}))
                         for i in range(count)]
    consumer = e2e.consumer().start()
    for body in bodies:
        e2e.broker.publish(body)
    wait_all_terminal(len(bodies), [consumer], timeout=120)
    assert consumer.terminate() == 0, consumer.log_tail()

    assert TradingSignal.objects.count() == len(bodies)
    assert len({s.asset for s in TradingSignal.objects.all()}) == 20
    for example in examples:
        signal = TradingSignal.objects.get(signal_id=example["signal_id"])
        assert signal.status == SignalStatus.EXECUTED, signal.reason
        assert signal.order_links.get().order.order_id in {o.order_id for o in e2e.simulator.engine.orders.values()}
    per_symbol = assert_exchange_matches_db(e2e.simulator)
    assert_per_symbol_fifo(per_symbol, [b["signal_id"] for b in bodies])
    statuses = set(TradingSignal.objects.values_list("status", flat=True))
    assert SignalStatus.EXECUTED in statuses and statuses <= {"executed", "rejected", "failed"}
    assert not TradingSignal.objects.filter(reason="").exclude(status=SignalStatus.EXECUTED).exists()
    # Events out: one order.created per placed order, carrying the signal's trace id.
    created = []
    channel = e2e.broker.conn.channel()
    while (message := events_queue.bind(channel).get(no_ack=True)) is not None:
        event = json.loads(message.body)
        if event["event"] == "order.created":
            created.append(event)
    channel.close()
    placed = Order.objects.filter(status__in=ACKNOWLEDGED)
    assert len(created) == placed.count()
    trace = {o.order_link_id: o.trace_id for o in placed}
    assert all(event["trace_id"] == trace[event["order_link_id"]] for event in created)


def test_kill_9_at_random_moments_loses_nothing_and_places_nothing_twice(e2e):
    rng = random.Random(2000)
    bodies = [random_signal(rng, e2e.symbols, e2e.prices) for _ in range(scaled(2000))]
    consumer = e2e.consumer().start()
    kills = 0
    next_kill = time.monotonic() + rng.uniform(0.5, 2.0)
    for body in bodies:
        e2e.broker.publish(body)
        if time.monotonic() >= next_kill and kills < 4:
            consumer.kill9()
            kills += 1
            consumer.start()
            next_kill = time.monotonic() + rng.uniform(0.5, 2.0)
    # Keep killing while the backlog is processed, so crashes land mid-submit too.
    while kills < 6:
        wait_until(lambda: TradingSignal.objects.filter(status__in=UNFINISHED).exists() or
                   TradingSignal.objects.count() >= len(bodies), timeout=30, what="work in progress")
        time.sleep(rng.uniform(0.2, 1.0))  # a random moment to crash at, not a wait for state
        consumer.kill9()
        kills += 1
        consumer.start()
    wait_all_terminal(len(bodies), [consumer], timeout=240)
    assert consumer.terminate() == 0, consumer.log_tail()

    stored = set(str(s) for s in TradingSignal.objects.values_list("signal_id", flat=True))
    assert stored == {b["signal_id"] for b in bodies}, "a published signal was lost"
    per_symbol = assert_exchange_matches_db(e2e.simulator)
    assert_per_symbol_fifo(per_symbol, [b["signal_id"] for b in bodies])
    assert e2e.broker.depth(e2e.broker.queue) == 0
    assert consumer.starts == kills + 1


def test_two_consumer_processes_keep_per_symbol_fifo(e2e):
    rng = random.Random(22)
    bodies = [random_signal(rng, e2e.symbols, e2e.prices) for _ in range(scaled(600))]
    first, second = e2e.consumer("first").start(), e2e.consumer("second").start()
    for body in bodies:
        e2e.broker.publish(body)
    wait_all_terminal(len(bodies), [first, second], timeout=120)
    assert first.terminate() == 0 and second.terminate() == 0
    per_symbol = assert_exchange_matches_db(e2e.simulator)
    assert_per_symbol_fifo(per_symbol, [b["signal_id"] for b in bodies])


def _malformed(rng: random.Random, index: int, valid) -> tuple[bytes, str | None, str]:
    """One bad message: (body, signal_id if usable, the field its reason must name)."""
    sid = str(uuid.uuid4())
    base = valid(signal_id=sid)
    kind = index % 10
    if kind == 0:
        return b'{"signal_id": "' + sid.encode() + b'", "amount": ', None, "not valid JSON"
    if kind == 1:
        return json.dumps({**base, "amount": [1, 2]}).encode(), sid, "amount"
    if kind == 2:
        return json.dumps({**base, "confidence": "high"}).encode(), sid, "confidence"
    if kind == 3:
        body = dict(base)
        body.pop(rng.choice(["asset", "signal_type", "timestamp", "strategy_id"]))
        return json.dumps(body).encode(), sid, "required field is missing"
    if kind == 4:
        return json.dumps({**base, "amount": "1e400"}).encode(), sid, "amount"
    if kind == 5:
        return json.dumps(base).replace('"confidence": 0.', '"confidence": NaN, "x": 0.').encode(), None, "NaN"
    if kind == 6:
        return json.dumps({**base, "amount": f"-{rng.randint(1, 999)}"}).encode(), sid, "amount"
    if kind == 7:
        return json.dumps({**base, "signal_id": "not-a-uuid"}).encode(), None, "signal_id"
    if kind == 8:
        return json.dumps({**base, "asset": "btc/usdt"}).encode(), sid, "asset"
    return b"\xff\xfe\x00garbage", None, "not UTF-8"


def test_malformed_messages_are_rejected_with_reasons_and_valid_ones_all_execute(e2e):
    rng = random.Random(1000)
    prices = e2e.prices

    def valid(**overrides):
        return random_signal(rng, e2e.symbols, prices, confidence=0.95, amount="200", **overrides)

    bad = [_malformed(rng, i, valid) for i in range(scaled(1000))]
    good = [valid(signal_type="buy") for _ in range(scaled(300))]
    unknown = [valid(asset=f"ZZ{i}USDT") for i in range(scaled(50))]
    stream = [("bad", b) for b in bad] + [("good", g) for g in good] + [("unknown", u) for u in unknown]
    rng.shuffle(stream)
    consumer = e2e.consumer().start()
    for kind, item in stream:
        e2e.broker.publish(item[0] if kind == "bad" else item)
    usable = [b for b in bad if b[1] is not None]
    wait_all_terminal(len(good) + len(unknown) + len(usable), [consumer], timeout=120)
    wait_until(lambda: e2e.broker.depth(e2e.broker.dead) >= len(bad), timeout=30, what="dead letters")
    assert consumer.alive() and consumer.terminate() == 0

    for body in good:
        signal = TradingSignal.objects.get(signal_id=body["signal_id"])
        assert signal.status == SignalStatus.EXECUTED, signal.reason
    for body in unknown:
        signal = TradingSignal.objects.get(signal_id=body["signal_id"])
        assert signal.status == SignalStatus.REJECTED and "is not listed on the exchange" in signal.reason
    for _, sid, field in usable:
        signal = TradingSignal.objects.get(signal_id=sid)
        assert signal.status == SignalStatus.REJECTED and field in signal.reason
    dead = e2e.broker.drain_dead()
    assert len(dead) == len(bad)
    reasons = sorted(m.headers[REASON_HEADER] for m in dead)
    assert all(reasons)
    for _, _, field in bad:
        assert any(field in reason for reason in reasons)
    assert TradingSignal.objects.count() == len(good) + len(unknown) + len(usable)
    assert_exchange_matches_db(e2e.simulator)
