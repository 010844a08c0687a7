"""Signal pipeline benchmark: RabbitMQ → consume_signals → PostgreSQL → the Bybit simulator (issue #17).

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/om_bench_signals \
    SIGNAL_BROKER_URL=amqp://guest:guest@127.0.0.1:5672// \
        .venv/bin/python bench/signals.py [--signals 2000] [--paced-signals 400] [--rate 40] [--processes 1 2]
                                          [--threads 4] [--symbols 20] [--skip-floors] [--no-fill-stream]

First it measures the machine's floors in the same run (``bench/floor.py``): serial INSERT+COMMIT on one
connection, and a bare httpx call to the simulator. Then, for 1 and 2 consumer processes, from publish to
the exchange's acceptance of the order (the simulator's order event):

- burst: every signal published at once; signals/s = acked orders / (last exchange ack − first publish),
  and its ratio to each floor;
- paced: ``--rate`` signals/s (the issue's latency figure is at 40/s); percentiles (p50, p99, max) of the
  total and of our own time: publish → ack minus the simulator's own time for the create (from the request
  reaching its HTTP app to its acceptance), measured inside the simulator;
- CPU ms per signal of our consumer processes (user+system from /proc, over the measured phase), of the
  ASGI ingest process (below) shown apart, and of the simulator process beside it; exchange calls per signal;
- the whole machine's CPU per signal over the same phase (every process: ours, the simulator, PostgreSQL and
  RabbitMQ, shown apart, the bench itself), how busy the machine was, and the signals/s its cores would give
  at that cost: under the burst, the bound of the figure above;
- where the time goes (median per stage): publish → inbox commit, inbox → order row (wake-up, rules,
  cancels, exchange reads), order row → exchange ack (the create request).

The simulator runs in a process of its own (``SimulatorProcess``): it no longer shares the bench's GIL.

The fill stream (default; ``--no-fill-stream`` leaves it out) is production's shape: uvicorn serving
``ordermanager.asgi`` (the Procfile's web process, whose ``ws/gateway/`` endpoint is the fill ingest) in a
child process, registered with the simulator's ws-gateway role as ``start_ingest`` does
(``ws_gateway_register``; the simulator's reset ends subscriptions, so each run registers anew). The
simulator then pushes each order's executions to it, and the book knows a market order's fills before the
next signal of the symbol asks (docs/decisions/0316). Without it the book learns of them only from
reconciliation: the next signal of the symbol waits for them or reads the exchange. ``start_ingest``'s
other duties (schedules, position validation, continuous reconciliation, which the consumers run too) are
not part of the bench.
The database is migrated and its signal, order, position, risk-limit and reconciliation tables are emptied
before each run: use a scratch one. Each consumer reconciles at startup (docs/decisions/0310); signals
are published once every startup run has finished. ``--symbols`` above the simulator's five adds
instruments (B01USDT...) for the run: per-symbol FIFO caps parallelism at the number of symbols. On a
2-core machine the broker, PostgreSQL, the simulator, the publisher and the consumers share two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
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

from bench._django import setup_postgres  # noqa: E402
from bench.floor import Floor, SimulatorProcess, commit_floor  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/om_bench_signals"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# When the current HTTP request reached the simulator's app (set by _Timed, read by the order listener).
_REQUEST_START: contextvars.ContextVar[float] = contextvars.ContextVar("request_start", default=0.0)


# --- the simulator process ----------------------------------------------------------------------------------------


class _Timed:
    """The simulator's ASGI app with the arrival time of each request in a context variable."""

    def __init__(self, app):
        self.app = app
        self.state = app.state

    async def __call__(self, scope, receive, send):
        token = _REQUEST_START.set(time.time())
        try:
            await self.app(scope, receive, send)
        finally:
            _REQUEST_START.reset(token)


def _serve_recording(api_key: str, api_secret: str, urls, stop, control) -> None:
    """The child: the simulator, an order listener noting (ack time, request start) per orderLinkId, and a
    control pipe (reset, add instruments, prices, collect acks)."""
    from exchange.simulator.server import SimulatorServer

    sim = SimulatorServer(api_key=api_key, api_secret=api_secret)
    sim.app = _Timed(sim.app)
    acks: dict[str, tuple[float, float]] = {}
    guard = threading.Lock()

    def on_order(message: dict) -> None:
        now = time.time()
        with guard:
            for item in message.get("data", []):
                link = item.get("orderLinkId", "")
                if link and link not in acks:
                    acks[link] = (now, _REQUEST_START.get() or now)

    def listen() -> None:
        sim.engine.add_listener(on_order, topics=["order"], faults=False)

    def serve_control() -> None:
        while not stop.is_set():
            if not control.poll(0.2):
                continue
            command, arg = control.recv()
            reply = True
            if command == "reset":
                sim.reset()  # drops the listeners too
                listen()
            elif command == "instruments":
                sim.add_instruments(arg)
            elif command == "prices":
                reply = {k: str(v) for k, v in sim.engine.prices.items()}
            if command in ("reset", "clear", "acks"):
                with guard:
                    reply = dict(acks) if command == "acks" else True
                    acks.clear()
            control.send(reply)

    with sim:
        listen()
        threading.Thread(target=serve_control, daemon=True).start()
        urls.put(sim.url)
        stop.wait()


class BenchSimulator(SimulatorProcess):
    """``SimulatorProcess`` whose child also records when each order was accepted and when its request arrived."""

    def __init__(self, api_key: str = "bench-key", api_secret: str = "bench-secret"):
        super().__init__(api_key, api_secret)
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self._control, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve_recording,
                                    args=(api_key, api_secret, self._urls, self._stop, child), daemon=True)

    def ask(self, command: str, arg=None):
        self._control.send((command, arg))
        if not self._control.poll(30):
            raise RuntimeError(f"the simulator process did not answer {command!r}")
        return self._control.recv()

    @property
    def pid(self) -> int:
        return self._process.pid


# --- helpers ------------------------------------------------------------------------------------------------------


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))] if ordered else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15 of stat)


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine spent busy so far (every core; idle and I/O wait excluded), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS


def servers_cpu_seconds() -> dict[str, float]:
    """CPU so far of the servers the pipeline uses on this machine, by name: PostgreSQL (every ``postgres``
    process) and RabbitMQ (``beam.smp``). A backend that exits during a run takes its share with it."""
    totals = {"PostgreSQL": 0.0, "RabbitMQ": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().strip()
        except OSError:
            continue
        server = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ"}.get(name)
        if server:
            totals[server] += cpu_seconds(int(entry.name))
    return totals


def _reset_tables(*, warm_up_only: bool = False):
    from django.db import IntegrityError, OperationalError

    from exchange.models import ExchangeCall
    from orders.models import BackfillMark, Execution, Order, ReconciliationRun, RiskLimit, SignalOrderRelationship
    from positions.models import Position
    from signals_app.models import TradingSignal

    # A backfill mark (a reconnected fill stream marks every active symbol) sends position decisions to the
    # exchange (docs/decisions/0316): one left by the previous run's or the warm-up's symbols goes too.
    models = [Execution, SignalOrderRelationship, Order, TradingSignal, ExchangeCall, BackfillMark]
    if not warm_up_only:
        # Positions and fills left by a run would make the next run's startup reconciliation (against a
        # reset simulator) find differences and halt symbols.
        models += [Position, ReconciliationRun, RiskLimit]
    for attempt in range(5):
        try:
            for model in models:
                model.objects.all().delete()
            return
        except (IntegrityError, OperationalError):
            # After the warm-up the consumers run: their reconciliation (or the fill stream) may book a fill
            # between two deletes, or deadlock with one.
            if attempt == 4:
                raise


class AsgiProcess:
    """uvicorn serving ``ordermanager.asgi`` in a child process: ws-gateway's endpoint (fill ingest)."""

    KEY = "bench-gateway-key"

    def __init__(self, sim: BenchSimulator):
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/ws/gateway/"
        self.env = {**os.environ, "WS_GATEWAY_API_KEY": self.KEY, "BYBIT_ENV": "simulator", "BYBIT_BASE_URL": sim.url,
                    "BYBIT_API_KEY": sim.api_key, "BYBIT_API_SECRET": sim.api_secret, "LOG_LEVEL": "warning"}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> AsgiProcess:
        import socket

        log = open(ROOT / "var" / "bench-asgi.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "ordermanager.asgi:application", "--host", "127.0.0.1", "--port",
             str(self.port), "--no-access-log", "--ws-max-size", "1048576", "--log-level", "warning"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError("uvicorn (ordermanager.asgi) exited; see var/bench-asgi.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        if not _wait(listening, 60):
            raise RuntimeError("uvicorn (ordermanager.asgi) did not listen within 60 s")
        return self

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(os_signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def subscribe(self, sim: BenchSimulator) -> None:
        """Register our subscription with the simulator's ws-gateway role (as ``start_ingest`` does) and wait
        until it has connected to our endpoint."""
        import httpx
        from django.conf import settings

        from orders.services.gateway_registration import ws_gateway_register

        host, port = sim.url.rsplit("//", 1)[1].split(":")
        settings.WS_GATEWAY_HOST, settings.WS_GATEWAY_PORT = host, int(port)
        settings.WS_GATEWAY_API_KEY, settings.WS_GATEWAY_CALLBACK_URL = self.KEY, self.url
        settings.ENABLE_DRY_RUN = False
        if not ws_gateway_register():
            raise RuntimeError("the ws-gateway registration was skipped")
        subs = f"{sim.url}/ws-gateway/api/v1/subscriptions"
        if not _wait(lambda: any(s["connected"] for s in httpx.get(subs, headers={"X-API-Key": self.KEY}).json()[
                "subscriptions"]), 30):
            raise RuntimeError("the simulator's ws-gateway never connected to our endpoint; see var/bench-asgi.log")


def _extra_instruments(count: int) -> list[dict]:
    return [{"symbol": f"B{i:02d}USDT", "price": "100", "tickSize": "0.01", "qtyStep": "0.01", "minOrderQty": "0.01"}
            for i in range(1, count + 1)]


def _consumers(count: int, *, queue: str, sim: BenchSimulator, threads: int) -> list[subprocess.Popen]:
    env = {
        **os.environ, "SIGNAL_QUEUE": queue, "SIGNAL_DEAD_LETTER_QUEUE": f"{queue}.dead",
        "ORDER_EVENTS_EXCHANGE": f"{queue}.events", "BYBIT_ENV": "simulator", "BYBIT_BASE_URL": sim.url,
        "BYBIT_API_KEY": sim.api_key, "BYBIT_API_SECRET": sim.api_secret, "ALLOW_SHORT": "true",
        "SIGNAL_PROCESSOR_THREADS": str(max(1, threads)), "LOG_LEVEL": "warning", "MAX_POSITION_VALUE": "100000000",
        "MAX_EXPOSURE": "1000000000", "MAX_ORDER_SIZE_RATIO": "1",
    }
    log = open(ROOT / "var" / "bench-consumers.log", "ab")  # noqa: SIM115
    command = [sys.executable, "manage.py", "consume_signals", *(["--no-process"] if threads <= 0 else [])]
    return [subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT) for _ in range(count)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(os_signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)  # the bench polls the database for the end of a run, with a deadline
    return False


# --- one run ------------------------------------------------------------------------------------------------------


class Run:
    def __init__(self, args, sim: BenchSimulator, symbols: list[str], asgi: AsgiProcess | None):
        self.args, self.sim, self.symbols, self.asgi = args, sim, symbols, asgi
        self.prices: dict[str, D] = {}

    def signal(self, rng: random.Random, symbol: str | None = None) -> dict:
        symbol = symbol or rng.choice(self.symbols)
        price = self.prices[symbol]
        return {
            "signal_id": str(uuid.uuid4()), "signal_type": rng.choice(["buy", "sell"]), "asset": symbol,
            "amount": "100", "confidence": 0.95, "timestamp": datetime.now(UTC).isoformat(), "strategy_id": "bench",
            "market_data_snapshot": {"price": str(price), "spread": str(price * D("0.0002"))},
        }


def _measure(run: Run, processes: int, *, count: int, rate: float | None) -> dict:
    import httpx
    from kombu import Connection, Producer

    from orders.models import Order, OrderStatus, ReconciliationRun
    from signals_app.amqp import ingress_queue, signal_publish
    from signals_app.models import TradingSignal

    _reset_tables()
    run.sim.ask("reset")
    listed = run.sim.ask("prices")
    if len(run.symbols) > len(listed):
        run.sim.ask("instruments", _extra_instruments(len(run.symbols) - len(listed)))
    run.prices = {k: D(v) for k, v in run.sim.ask("prices").items()}
    httpx.post(f"{run.sim.url}/sim/rate-limits", json={"scale": 10000}).raise_for_status()
    if run.asgi:
        run.asgi.subscribe(run.sim)  # the reset ended the last run's subscription
    queue_name = f"bench.signals.{uuid.uuid4().hex[:8]}"
    queue = ingress_queue(queue_name)
    conn = Connection(os.environ["SIGNAL_BROKER_URL"], transport_options={"confirm_publish": True})
    producer = Producer(conn.default_channel)
    queue.bind(conn.default_channel).declare()
    procs = _consumers(processes, queue=queue_name, sim=run.sim, threads=run.args.threads)
    try:
        startups = ReconciliationRun.objects.filter(trigger="startup")
        _wait(lambda: startups.exclude(status="running").count() >= processes, 120)
        rng = random.Random(processes)
        # Warm-up: instrument cache, connections, first ticker read per symbol.
        for symbol in run.symbols:
            signal_publish(body=json.dumps(run.signal(rng, symbol)).encode(), connection=conn, queue=queue,
                           producer=producer)
        intake_only = run.args.threads <= 0
        _wait(lambda: TradingSignal.objects.filter(
            status__in=["received"] if intake_only else ["executed", "rejected", "failed"]).count() >= len(run.symbols),
            60)
        working = [OrderStatus.PENDING_SUBMIT, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED]
        if run.asgi and not intake_only:
            _wait(lambda: not Order.objects.filter(status__in=working).exists(), 60)  # the warm-up's fills booked
        _reset_tables(warm_up_only=True)
        run.sim.ask("clear")
        bodies = [run.signal(rng) for _ in range(count)]
        published: dict[str, float] = {}
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        sim_cpu_before = cpu_seconds(run.sim.pid)
        asgi_cpu_before = cpu_seconds(run.asgi.pid) if run.asgi else 0.0
        servers_before, machine_before = servers_cpu_seconds(), machine_busy_seconds()
        started = time.time()
        for index, body in enumerate(bodies):
            if rate:
                delay = started + index / rate - time.time()
                if delay > 0:
                    time.sleep(delay)  # pacing the publisher at --rate
            raw = json.dumps(body).encode()
            published[uuid.UUID(body["signal_id"]).hex] = time.time()
            signal_publish(body=raw, connection=conn, queue=queue, producer=producer)
        # The end of the run, polled without taking PostgreSQL's CPU from what is measured (its share is printed):
        # an index probe for unfinished signals first, and the count of the inbox (a scan of every row version)
        # only when nothing is waiting; then the probe again, as a signal stored after it would be unfinished.
        unfinished = TradingSignal.objects.filter(status__in=["received", "processing"])
        if intake_only:
            _wait(lambda: TradingSignal.objects.count() >= count, 300)
        else:
            _wait(lambda: not unfinished.exists() and TradingSignal.objects.count() >= count
                  and not unfinished.exists(), 300)
        if run.asgi and not intake_only:
            # The ingest's CPU counts the fills of every order of the run: wait until they are booked.
            _wait(lambda: not Order.objects.filter(status__in=working).exists(), 60)
        cpu = sum(cpu_seconds(p.pid) for p in procs) - sum(cpu_before)
        asgi_cpu = cpu_seconds(run.asgi.pid) - asgi_cpu_before if run.asgi else None
        sim_cpu = cpu_seconds(run.sim.pid) - sim_cpu_before
        machine_cpu, finished = machine_busy_seconds() - machine_before, time.time()
        servers_cpu = {k: v - servers_before[k] for k, v in servers_cpu_seconds().items()}
        result = _intake_figures(published, started, count) if intake_only else _figures(
            run.sim.ask("acks"), published, started, count)
        result["cpu_ms"] = cpu * 1000 / max(count, 1)
        result["sim_cpu_ms"] = sim_cpu * 1000 / max(count, 1)
        result["asgi_cpu_ms"] = None if asgi_cpu is None else asgi_cpu * 1000 / max(count, 1)
        result["servers_cpu_ms"] = {k: v * 1000 / max(count, 1) for k, v in servers_cpu.items()}
        result["machine_cpu_ms"] = machine_cpu * 1000 / max(count, 1)
        result["machine_busy"] = machine_cpu / max(finished - started, 1e-9) / (os.cpu_count() or 1)
    finally:
        # Also when the run breaks: a consumer left running would process the next run's signals.
        _stop(procs)
        queue.bind(conn.default_channel).delete()
        conn.release()
    return result


def _figures(acks: dict, published: dict, started: float, count: int) -> dict:
    from exchange.models import ExchangeCall
    from orders.models import Order
    from signals_app.models import TradingSignal

    latencies, own, inbox, planning, sending = [], [], [], [], []
    received = {s.signal_id.hex: s.received_at.timestamp()
                for s in TradingSignal.objects.only("signal_id", "received_at")}
    for order in Order.objects.only("order_link_id", "created_at"):
        sid = order.order_link_id.split("-")[0]
        if sid not in published or order.order_link_id not in acks:
            continue
        ack, request_start = acks[order.order_link_id]
        total = ack - published[sid]
        latencies.append(total)
        own.append(total - (ack - request_start))
        inbox.append(received[sid] - published[sid])
        planning.append(order.created_at.timestamp() - received[sid])
        sending.append(ack - order.created_at.timestamp())
    calls = ExchangeCall.objects.count()
    last = max((a for a, _ in acks.values()), default=time.time())
    statuses = dict.fromkeys(["executed", "rejected", "failed"], 0)
    for status in TradingSignal.objects.values_list("status", flat=True):
        statuses[status] = statuses.get(status, 0) + 1
    ms = 1000.0
    return {
        "signals": count, "orders_acked": len(latencies), "statuses": statuses,
        "per_second": len(latencies) / max(last - started, 1e-9),
        "p50": _percentile(latencies, 50) * ms, "p99": _percentile(latencies, 99) * ms,
        "max": max(latencies, default=0) * ms,
        "own_p50": _percentile(own, 50) * ms, "own_p99": _percentile(own, 99) * ms,
        "inbox_ms": statistics.median(inbox) * ms if inbox else 0,
        "plan_ms": statistics.median(planning) * ms if planning else 0,
        "send_ms": statistics.median(sending) * ms if sending else 0,
        "exchange_ms": statistics.median([(a - s) * ms for a, s in acks.values()]) if acks else 0,
        "exchange_calls_per_signal": calls / max(count, 1),
    }


def _intake_figures(published: dict, started: float, count: int) -> dict:
    """``--threads 0``: consumers without a processor; publish → inbox commit (``received_at``) only."""
    from signals_app.models import TradingSignal

    stored = {s.signal_id.hex: s.received_at.timestamp() for s in TradingSignal.objects.only("signal_id", "received_at")
              if s.signal_id.hex in published}  # fmt: skip
    inbox = [at - published[sid] for sid, at in stored.items()]
    last = max(stored.values(), default=started)
    ms = 1000.0
    return {"signals": count, "stored": len(inbox), "per_second": len(inbox) / max(last - started, 1e-9),
            "p50": _percentile(inbox, 50) * ms, "p99": _percentile(inbox, 99) * ms,
            "max": max(inbox, default=0) * ms}


def _print(label: str, r: dict, floors: list[Floor]) -> None:
    if "stored" in r:
        print(f"  {label:<22} intake only: {r['stored']}/{r['signals']} stored, publish→inbox commit p50 "
              f"{r['p50']:.1f} ms  p99 {r['p99']:.1f} ms  max {r['max']:.1f} ms; CPU per signal {r['cpu_ms']:.2f} ms")
        return
    ratios = "; ".join(f.ratio(r["per_second"]) for f in floors)
    print(f"  {label:<22} {r['per_second']:7.0f} signals/s  ({r['orders_acked']}/{r['signals']} acked, "
          f"{r['statuses']}){'  = ' + ratios if ratios else ''}")
    print(f"  {'':<22} publish→ack p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms  max {r['max']:6.1f} ms | "
          f"own (exchange excluded) p50 {r['own_p50']:6.1f} ms  p99 {r['own_p99']:6.1f} ms")
    ingest = "" if r["asgi_cpu_ms"] is None else f"ASGI fill ingest {r['asgi_cpu_ms']:.2f} ms, "
    print(f"  {'':<22} CPU per signal: consumers {r['cpu_ms']:.2f} ms, {ingest}simulator {r['sim_cpu_ms']:.2f} ms | "
          f"{r['exchange_calls_per_signal']:.2f} exchange calls/signal")
    servers = ", ".join(f"{k} {v:.2f} ms" for k, v in r["servers_cpu_ms"].items())
    cores = os.cpu_count() or 1
    print(f"  {'':<22} whole machine {r['machine_cpu_ms']:.2f} ms of CPU per signal ({servers}; the machine "
          f"{r['machine_busy']:.0%} busy over the run): at that cost its {cores} cores give at most "
          f"{cores * 1000 / max(r['machine_cpu_ms'], 1e-9):.0f} signals/s")
    print(f"  {'':<22} where (medians): publish→inbox {r['inbox_ms']:.1f} ms | inbox→order row {r['plan_ms']:.1f} ms"
          f" | order row→exchange ack {r['send_ms']:.1f} ms (simulator's own time {r['exchange_ms']:.2f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=2000, help="signals of the burst run")
    parser.add_argument("--paced-signals", type=int, default=400, help="signals of the paced (latency) run")
    parser.add_argument("--rate", type=float, default=40.0, help="signals/s for the latency run")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=8,
                        help="processor threads per consumer process (the service's default on PostgreSQL; "
                             "0: intake only, publish → inbox measured)")
    parser.add_argument("--symbols", type=int, default=20, help="symbols (the simulator lists 5; more are added)")
    parser.add_argument("--skip-floors", action="store_true", help="do not measure the floors first")
    parser.add_argument("--no-burst", action="store_true")
    parser.add_argument("--no-paced", action="store_true")
    parser.add_argument("--no-fill-stream", action="store_true",
                        help="no fill ingest (uvicorn + ws-gateway): the book learns of fills from reconciliation only")
    args = parser.parse_args()
    # SIGTERM ends the bench through its finally blocks: the consumers and the ASGI process are stopped.
    os_signal.signal(os_signal.SIGTERM, lambda *_: sys.exit(143))
    if not os.environ.get("SIGNAL_BROKER_URL"):
        sys.exit("set SIGNAL_BROKER_URL=amqp://... (and BENCH_DATABASE_URL=postgres://... , a scratch database)")
    db_url = os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DB
    setup_postgres(db_url)
    import httpx
    from django.db import connection

    (ROOT / "var").mkdir(exist_ok=True)
    floors: list[Floor] = []
    if not args.skip_floors:
        floors.append(commit_floor(db_url))
    connection.close()  # not shared with the forked simulator
    with BenchSimulator() as sim, contextlib.ExitStack() as stack:
        asgi = None if args.no_fill_stream else stack.enter_context(AsgiProcess(sim))
        if not args.skip_floors:
            httpx.post(f"{sim.url}/sim/rate-limits", json={"scale": 100000}).raise_for_status()
            floors.append(sim.http_floor())
        listed = sorted(sim.ask("prices"))
        extra = [spec["symbol"] for spec in _extra_instruments(max(0, args.symbols - len(listed)))]
        symbols = (listed + extra)[: args.symbols]
        run = Run(args, sim, symbols, asgi)
        stream = (f"fill stream: uvicorn ordermanager.asgi in its own process (pid {asgi.pid}) fed by the "
                  "simulator's ws-gateway role" if asgi else "no fill stream (fills from reconciliation only)")
        print(f"signal pipeline bench: {len(symbols)} symbols, market orders, {args.threads} processor threads per "
              f"process, {os.cpu_count()} CPUs, simulator in its own process (pid {sim.pid}); {stream}; "
              f"load average {os.getloadavg()[0]:.1f}")
        for floor in floors:
            print(f"  {floor.line()}")
        for processes in args.processes:
            print(f"{processes} consumer process(es):")
            if not args.no_burst:
                _print(f"burst ({args.signals})", _measure(run, processes, count=args.signals, rate=None), floors)
            if not args.no_paced:
                _print(f"paced ({args.rate:.0f}/s)", _measure(run, processes, count=args.paced_signals,
                                                               rate=args.rate), floors)


if __name__ == "__main__":
    main()
