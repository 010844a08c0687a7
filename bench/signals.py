"""Signal pipeline benchmark: RabbitMQ → consume_signals → PostgreSQL → the Bybit simulator.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/om_bench SIGNAL_BROKER_URL=amqp://guest:guest@127.0.0.1:5672// \
        .venv/bin/python bench/signals.py [--signals 2000] [--rate 200] [--processes 1 2] [--threads 4] [--symbols 20]

For 1 and 2 consumer processes it prints, from publish to the exchange's acknowledgement of the order:

- burst: every signal published at once; signals/s = signals / (last exchange ack − first publish);
- paced: ``--rate`` signals/s; latency percentiles (p50, p99, max) at that load;

and where the time goes (median per stage): publish → inbox commit, inbox → order row (rules, cancels,
exchange reads), order row → exchange ack (the create request), plus the simulator's own request time
(the ExchangeCall audit latency), which is not our overhead.

The database named by DATABASE_URL is migrated and its signal, order, position, risk-limit and reconciliation
tables are emptied before each run: use a scratch one. Each consumer reconciles at startup (docs/decisions/0310);
signals are published once every startup run has finished. ``--symbols`` above the simulator's five adds
instruments (B01USDT...) for the run: per-symbol FIFO caps parallelism at the number of symbols.
The simulator runs in this process (a thread), so its CPU competes with the consumers: on a 2-core machine
the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal as os_signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ordermanager.settings.base")
os.environ.setdefault("LOG_LEVEL", "warning")


def _setup():
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


class Run:
    def __init__(self, args, simulator, symbols):
        self.args = args
        self.simulator = simulator
        self.symbols = symbols
        self.acks: dict[str, float] = {}
        self.published: dict[str, float] = {}
        self.lock = threading.Lock()

    def on_event(self, message: dict) -> None:
        if message.get("topic") != "order":
            return
        now = time.time()
        with self.lock:
            for item in message["data"]:
                link = item.get("orderLinkId", "")
                if link and link not in self.acks:
                    self.acks[link] = now

    def signal(self, rng: random.Random) -> dict:
        symbol = rng.choice(self.symbols)
        price = self.simulator.engine.prices[symbol]
        return {
            "signal_id": str(uuid.uuid4()), "signal_type": rng.choice(["buy", "sell"]), "asset": symbol,
            "amount": "100", "confidence": 0.95, "timestamp": datetime.now(UTC).isoformat(), "strategy_id": "bench",
            "market_data_snapshot": {"price": str(price), "spread": str(price * D("0.0002"))},
        }


def _reset_tables(*, warm_up_only: bool = False):
    from exchange.models import ExchangeCall
    from orders.models import Execution, Order, ReconciliationRun, RiskLimit, SignalOrderRelationship
    from positions.models import Position
    from signals_app.models import TradingSignal

    models = [Execution, SignalOrderRelationship, Order, TradingSignal, ExchangeCall]
    if not warm_up_only:
        # Positions and fills left by a run would make the next run's startup reconciliation (against a
        # reset simulator) find differences and halt symbols.
        models += [Position, ReconciliationRun, RiskLimit]
    for model in models:
        model.objects.all().delete()


def _extra_instruments(count: int) -> list[dict]:
    return [{"symbol": f"B{i:02d}USDT", "price": "100", "tickSize": "0.01", "qtyStep": "0.01", "minOrderQty": "0.01"}
            for i in range(1, count + 1)]


def _consumers(count: int, *, queue: str, simulator, threads: int) -> list[subprocess.Popen]:
    env = {
        **os.environ, "SIGNAL_QUEUE": queue, "SIGNAL_DEAD_LETTER_QUEUE": f"{queue}.dead",
        "ORDER_EVENTS_EXCHANGE": f"{queue}.events", "BYBIT_ENV": "simulator", "BYBIT_BASE_URL": simulator.url,
        "BYBIT_API_KEY": simulator.api_key, "BYBIT_API_SECRET": simulator.api_secret, "ALLOW_SHORT": "true",
        "SIGNAL_PROCESSOR_THREADS": str(threads), "LOG_LEVEL": "warning", "MAX_POSITION_VALUE": "100000000",
        "MAX_EXPOSURE": "1000000000", "MAX_ORDER_SIZE_RATIO": "1",
    }
    log = open(ROOT / "var" / "bench-consumers.log", "ab")  # noqa: SIM115
    return [subprocess.Popen([sys.executable, "manage.py", "consume_signals"], cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT) for _ in range(count)]


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _measure(run: Run, processes: int, *, count: int, rate: float | None) -> dict:
    from kombu import Connection, Producer

    from signals_app.amqp import ingress_queue, signal_publish
    from signals_app.models import TradingSignal

    _reset_tables()
    run.simulator.reset()
    if len(run.symbols) > len(run.simulator.engine.prices):
        run.simulator.engine.add_instruments(_extra_instruments(len(run.symbols) - len(run.simulator.engine.prices)))
    import httpx

    httpx.post(f"{run.simulator.url}/sim/rate-limits", json={"scale": 10000}).raise_for_status()
    run.simulator.engine.add_listener(run.on_event, topics=["order"], faults=False)
    run.acks.clear()
    run.published.clear()
    queue_name = f"bench.signals.{uuid.uuid4().hex[:8]}"
    queue = ingress_queue(queue_name)
    conn = Connection(os.environ["SIGNAL_BROKER_URL"], transport_options={"confirm_publish": True})
    producer = Producer(conn.default_channel)
    queue.bind(conn.default_channel).declare()
    procs = _consumers(processes, queue=queue_name, simulator=run.simulator, threads=run.args.threads)
    from orders.models import ReconciliationRun

    _wait(lambda: ReconciliationRun.objects.filter(trigger="startup").exclude(status="running").count() >= processes,
          120)
    rng = random.Random(processes)
    # Warm-up: instrument cache, connections, first ticker read per symbol.
    for symbol in run.symbols:
        body = run.signal(rng)
        body["asset"] = symbol
        signal_publish(body=json.dumps(body).encode(), connection=conn, queue=queue, producer=producer)
    _wait(lambda: TradingSignal.objects.filter(status__in=["executed", "rejected", "failed"]).count()
          >= len(run.symbols), 60)
    _reset_tables(warm_up_only=True)
    run.acks.clear()
    bodies = [run.signal(rng) for _ in range(count)]
    started = time.time()
    for index, body in enumerate(bodies):
        if rate:
            delay = started + index / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        raw = json.dumps(body).encode()
        run.published[uuid.UUID(body["signal_id"]).hex] = time.time()
        signal_publish(body=raw, connection=conn, queue=queue, producer=producer)
    _wait(lambda: TradingSignal.objects.count() >= count
          and not TradingSignal.objects.filter(status__in=["received", "processing"]).exists(), 300)
    result = _figures(run, started, count)
    for proc in procs:
        proc.send_signal(os_signal.SIGTERM)
    for proc in procs:
        proc.wait(60)
    queue.bind(conn.default_channel).delete()
    conn.release()
    return result


def _figures(run: Run, started: float, count: int) -> dict:
    from django.db.models import Avg

    from exchange.models import ExchangeCall
    from orders.models import Order
    from signals_app.models import TradingSignal

    latencies, inbox, planning, sending = [], [], [], []
    received = {s.signal_id.hex: s.received_at.timestamp()
                for s in TradingSignal.objects.only("signal_id", "received_at")}
    for order in Order.objects.only("order_link_id", "created_at"):
        sid = order.order_link_id.split("-")[0]
        if sid not in run.published or order.order_link_id not in run.acks:
            continue
        published, ack = run.published[sid], run.acks[order.order_link_id]
        latencies.append(ack - published)
        inbox.append(received[sid] - published)
        planning.append(order.created_at.timestamp() - received[sid])
        sending.append(ack - order.created_at.timestamp())
    create_ms = ExchangeCall.objects.filter(path="/v5/order/create").aggregate(v=Avg("latency_ms"))["v"] or 0
    calls = ExchangeCall.objects.count()
    last = max(run.acks.values()) if run.acks else time.time()
    statuses = dict.fromkeys(["executed", "rejected", "failed"], 0)
    for status in TradingSignal.objects.values_list("status", flat=True):
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "signals": count, "orders_acked": len(latencies), "statuses": statuses,
        "per_second": len(latencies) / max(last - started, 1e-9),
        "p50": _percentile(latencies, 50) * 1000 if latencies else 0,
        "p99": _percentile(latencies, 99) * 1000 if latencies else 0,
        "max": max(latencies) * 1000 if latencies else 0,
        "inbox_ms": statistics.median(inbox) * 1000 if inbox else 0,
        "plan_ms": statistics.median(planning) * 1000 if planning else 0,
        "send_ms": statistics.median(sending) * 1000 if sending else 0,
        "sim_create_ms": float(create_ms), "exchange_calls_per_signal": calls / max(count, 1),
    }


def _print(label: str, r: dict) -> None:
    print(f"  {label:<28} {r['per_second']:8.0f} signals/s   p50 {r['p50']:7.1f} ms   p99 {r['p99']:7.1f} ms   "
          f"max {r['max']:7.1f} ms   ({r['orders_acked']}/{r['signals']} acked, {r['statuses']})")
    print(f"  {'':<28} where: publish→inbox {r['inbox_ms']:.1f} ms | inbox→order row {r['plan_ms']:.1f} ms | "
          f"order row→exchange ack {r['send_ms']:.1f} ms (simulator create {r['sim_create_ms']:.1f} ms) | "
          f"{r['exchange_calls_per_signal']:.2f} exchange calls/signal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="signals/s for the latency run")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=4, help="processor threads per consumer process")
    parser.add_argument("--symbols", type=int, default=20, help="symbols (the simulator lists 5; more are added)")
    args = parser.parse_args()
    if not os.environ.get("SIGNAL_BROKER_URL") or "postgres" not in os.environ.get("DATABASE_URL", ""):
        sys.exit("set DATABASE_URL=postgres://... (a scratch database) and SIGNAL_BROKER_URL=amqp://...")
    _setup()
    from exchange.simulator.server import SimulatorServer

    (ROOT / "var").mkdir(exist_ok=True)
    with SimulatorServer(api_key="bench-key", api_secret="bench-secret") as simulator:
        listed = sorted(simulator.engine.prices)
        extra = [spec["symbol"] for spec in _extra_instruments(max(0, args.symbols - len(listed)))]
        symbols = (listed + extra)[: args.symbols]
        run = Run(args, simulator, symbols)
        print(f"signal pipeline bench: {args.signals} signals over {len(symbols)} symbols, market orders, "
              f"{args.threads} processor threads per process, {os.cpu_count()} CPUs")
        for processes in args.processes:
            print(f"{processes} consumer process(es):")
            _print("burst (all at once)", _measure(run, processes, count=args.signals, rate=None))
            _print(f"paced ({args.rate:.0f}/s)", _measure(run, processes, count=args.signals, rate=args.rate))


if __name__ == "__main__":
    main()
