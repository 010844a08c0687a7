"""Chaos (issue 11): the live path under exchange faults, crashes and server restarts keeps the book equal to the
exchange on its own, loses nothing, sends nothing twice, keeps per-symbol order and never decides on a stale book.

Production's shape, smaller: our own PostgreSQL cluster and RabbitMQ node (tests.fixtures.private_servers, so they
can be restarted without touching the shared servers), the Bybit simulator (a thread of this process) answering
5% 503, 5% rate limits, 2% timeouts (held past the client's timeout, then processed), 1% dropped responses (the
order is created, the answer lost), and dropping, duplicating and reordering 3% of the private events it pushes
as ws-gateway; as processes, as the Procfile starts them: the ws-gateway endpoint under a real uvicorn, two
``consume_signals``, ``start_ingest`` (registers with ws-gateway) and ``qcluster`` (schedules). Signals are
published at ``CHAOS_RATE``/s over ``CHAOS_SYMBOLS`` symbols while a consumer is ``kill -9``-ed a few times
(and restarted, once while PostgreSQL is down), RabbitMQ is restarted once and PostgreSQL once. A process that
exits on its own is restarted like a supervisor would, and counted.

Then, with the faults off and WITHOUT a manual reconcile, it waits (deadline ``CHAOS_CONVERGE_SECONDS``, 120 s)
for our orders, executions and positions to equal the simulator's, and checks every property at once, failing
with one line per property and its numbers. Process logs and the report stay in the test's tmp_path, or in
``$CHAOS_LOG_DIR/<time>/`` when that is set (the path is printed on failure).

    CI=true DATABASE_URL=... TEST_AMQP_URL=... .venv/bin/pytest tests/e2e/test_chaos.py -q
    (CHAOS_SIGNALS, CHAOS_RATE, CHAOS_SYMBOLS, CHAOS_SEED, CHAOS_CONVERGE_SECONDS change the run)
"""

from __future__ import annotations

import json
import os
import random
import signal as os_signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
from django.db import InterfaceError, OperationalError, connections
from kombu import Connection, Producer

from exchange.models import ExchangeCall
from exchange.simulator.server import SimulatorServer
from orders.exchange_status import BYBIT_STATUS
from orders.models import Execution, Order, OrderStatus
from positions.models import Position
from signals_app.amqp import ingress_queue, signal_publish
from signals_app.models import SignalStatus, TradingSignal
from signals_app.services.signal_processor import UNFINISHED
from tests.fixtures.private_servers import free_port
from tests.signals_app.e2e.harness import random_signal

# The timeout leaves room for the convergence deadline on a loaded 2-core machine; the run itself is ~3-4 min.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parents[2]
DB = "chaos"  # the Django alias of the private database (the test's own reads)
SIGNALS = int(os.environ.get("CHAOS_SIGNALS", "500"))
RATE = float(os.environ.get("CHAOS_RATE", "20"))
SYMBOL_COUNT = int(os.environ.get("CHAOS_SYMBOLS", "12"))
SEED = int(os.environ.get("CHAOS_SEED", "11"))
CONVERGE_SECONDS = float(os.environ.get("CHAOS_CONVERGE_SECONDS", "120"))
TERMINAL_SECONDS = 90.0  # after the last publish, for every signal to reach a terminal state
HTTP_TIMEOUT = 1.0  # the client's; the simulator's "timeout" fault holds a request longer than this
FAULTS = {
    "server_error": 0.05, "rate_limit": 0.05, "timeout": 0.02, "drop_response": 0.01,
    "drop_events": 0.03, "duplicate_events": 0.03, "reorder_events": 0.03,
    "timeout_seconds": 1.5, "server_error_status": 503, "drop_response_mode": "504", "seed": SEED,
}
NO_FAULTS = {key: 0 for key in ("server_error", "rate_limit", "timeout", "drop_response", "drop_events",
                                "duplicate_events", "reorder_events")}
GATEWAY_KEY = "chaos-gateway-key"
TERMINAL = {SignalStatus.EXECUTED, SignalStatus.REJECTED, SignalStatus.FAILED, SignalStatus.DRY_RUN,
            SignalStatus.SKIPPED}
OUR_OPEN = {OrderStatus.PENDING_SUBMIT, OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING_CANCEL,
            OrderStatus.FILLED, OrderStatus.CANCELLED}  # statuses that claim (or may claim) an exchange order


# ---------------------------------------------------------------------------------------------- processes
class ServiceProcess:
    """One Procfile-like process pointed at the private servers; ``expected_down`` while we kill it."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.expected_down = False
        self.starts = 0

    def start(self) -> ServiceProcess:
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.expected_down = False
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        self.expected_down = True
        if self.alive():
            self.proc.send_signal(os_signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 10) -> None:
        self.expected_down = True
        if not self.alive():
            return
        self.proc.send_signal(os_signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Restarts a process that exited on its own (as systemd would) and records each such exit."""

    def __init__(self, processes: list[ServiceProcess]):
        self.processes = processes
        self.exits: list[tuple[float, str, int, str]] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            with self.lock:
                for proc in self.processes:
                    if proc.expected_down or proc.alive() or proc.proc is None:
                        continue
                    self.exits.append((time.monotonic(), proc.name, proc.proc.returncode, proc.tail(6)))
                    time.sleep(1.0)  # a supervisor's restart delay
                    proc.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


# ---------------------------------------------------------------------------------------------- test's reads
def _db(read, *, timeout: float = 60):
    """Run a read on the private database, reconnecting across its restart."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except (OperationalError, InterfaceError):
            connections[DB].close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # the server is coming back: retry the read until the deadline


def _until(condition, *, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline


@dataclass
class Run:
    sim: SimulatorServer
    published: list[str] = field(default_factory=list)  # signal ids (hex), publish order
    events: list[str] = field(default_factory=list)  # what the chaos did, when
    started: float = field(default_factory=time.monotonic)
    event_faults: dict = field(default_factory=dict)
    dropped_exec_ids: set = field(default_factory=set)  # executions whose private message the simulator dropped

    def note(self, text: str) -> None:
        self.events.append(f"t+{time.monotonic() - self.started:5.1f}s {text}")


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture
def chaos_db(private_postgres, django_db_blocker, tmp_path):
    """The private cluster's database, migrated, reachable from this process as the ``chaos`` alias."""
    url = private_postgres.create_database("chaos")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base", "DATABASE_URL": url,
           "LOG_LEVEL": "warning", "REDIS_URL": ""}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True,
                   timeout=180)
    settings_dict = {**connections["default"].settings_dict, "NAME": "chaos", "HOST": "127.0.0.1",
                     "PORT": str(private_postgres.port), "USER": "postgres", "PASSWORD": "", "CONN_MAX_AGE": 0,
                     "TEST": {"NAME": "chaos"}}
    connections.settings[DB] = settings_dict
    with django_db_blocker.unblock():
        yield url
        connections[DB].close()
    del connections[DB]
    del connections.settings[DB]


@pytest.fixture
def chaos_sim():
    extra = [{"symbol": f"C{i:02d}USDT", "price": "100.00", "tickSize": "0.01", "maxPrice": "199999.98",
              "qtyStep": "0.01", "minOrderQty": "0.01", "maxOrderQty": "100000", "maxMktOrderQty": "10000",
              "minNotionalValue": "5", "maxLeverage": "50"} for i in range(1, max(0, SYMBOL_COUNT - 5) + 1)]
    # Prices walk every second so resting limit orders fill (or not) while the run goes on.
    server = SimulatorServer(api_key="chaos-key", api_secret="chaos-secret", seed=SEED, extra_instruments=extra,
                             tick_interval=1.0)
    server.start()
    yield server
    server.stop()


def _service_env(*, db_url: str, amqp_url: str, sim: SimulatorServer, web_port: int) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base",
        "DATABASE_URL": db_url,
        "SIGNAL_BROKER_URL": amqp_url,
        "BYBIT_ENV": "simulator",
        "BYBIT_BASE_URL": sim.url,
        "BYBIT_API_KEY": sim.api_key,
        "BYBIT_API_SECRET": sim.api_secret,
        # With BYBIT_ENV=simulator the client signs with the paper credentials named here (docs/decisions/0520).
        "SIMULATOR_API_KEY": sim.api_key,
        "SIMULATOR_API_SECRET": sim.api_secret,
        "BYBIT_HTTP_TIMEOUT": str(HTTP_TIMEOUT),
        "BYBIT_API_RETRY_BASE_DELAY": "0.1",
        "BYBIT_API_RETRY_MAX_DELAY": "0.5",
        "WS_GATEWAY_HOST": "127.0.0.1",
        "WS_GATEWAY_PORT": str(sim.port),
        "WS_GATEWAY_API_KEY": GATEWAY_KEY,
        "WS_GATEWAY_CALLBACK_URL": f"ws://127.0.0.1:{web_port}/ws/gateway/",
        "SIGNAL_PROCESSOR_THREADS": "4",
        # Signals queue up during the outages; a signal that waits is still to be traded, not refused as stale.
        "SIGNAL_MAX_CLOCK_SKEW": "600",
        "ALLOW_SHORT": "true",
        "QCLUSTER_WORKERS": "1",
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",  # one line per event: the diagnosis greps them
        "REDIS_URL": "",
        "PYTHONUNBUFFERED": "1",
    }


# ---------------------------------------------------------------------------------------------- the run
class Publisher:
    """Publishes with confirms; across a broker restart it reconnects and re-publishes the unconfirmed message
    (a duplicate is the inbox's to drop, by signal_id)."""

    def __init__(self, url: str):
        self.url = url
        self.queue = ingress_queue("model-service.trading_signals")
        self.conn: Connection | None = None
        self.reconnects = 0

    def _connect(self) -> None:
        self.conn = Connection(self.url, transport_options={"confirm_publish": True}, connect_timeout=2)
        self.conn.connect()
        self.producer = Producer(self.conn.default_channel)

    def publish(self, body: dict, *, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.conn is None:
                    self._connect()
                signal_publish(body=json.dumps(body).encode(), connection=self.conn, queue=self.queue,
                               producer=self.producer)
                return
            except Exception:
                self.reconnects += 1
                self.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # the broker is restarting: try again until the deadline

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.release()
            except Exception:
                pass
        self.conn = None


@pytest.fixture
def log_dir(tmp_path) -> Path:
    """Where the processes' logs and the report go: CHAOS_LOG_DIR (kept) or the test's tmp_path."""
    if os.environ.get("CHAOS_LOG_DIR"):
        path = Path(os.environ["CHAOS_LOG_DIR"]) / time.strftime("%Y%m%d-%H%M%S")
        path.mkdir(parents=True)
        return path
    return tmp_path


def test_chaos_book_heals_itself(chaos_db, private_rabbitmq, private_postgres, chaos_sim, log_dir):
    tmp_path = log_dir
    sim = chaos_sim
    run = Run(sim=sim)
    web_port = free_port()
    env = _service_env(db_url=chaos_db, amqp_url=private_rabbitmq.url, sim=sim, web_port=web_port)
    manage = [sys.executable, "manage.py"]
    # As the Procfile starts them (keep_running.sh is the supervisor; here the test's Supervisor plays it).
    web = ServiceProcess("web", [sys.executable, "-m", "uvicorn", "ordermanager.asgi:application", "--host",
                                 "127.0.0.1", "--port", str(web_port), "--no-access-log", "--ws-max-size", "1048576"],
                         env, tmp_path)
    consumers = [ServiceProcess(f"consumer-{x}", [*manage, "consume_signals"], env, tmp_path) for x in "ab"]
    ingest = ServiceProcess("ingest", [*manage, "start_ingest"], env, tmp_path)
    qcluster = ServiceProcess("qcluster", ["sh", "-c", f"{sys.executable} manage.py wait_for_services --no-broker && "
                                                     f"exec {sys.executable} manage.py qcluster"], env, tmp_path)
    processes = [web, *consumers, ingest, qcluster]
    supervisor = Supervisor(processes)
    publisher = Publisher(private_rabbitmq.url)
    try:
        for proc in processes:
            proc.start()
        supervisor.start()
        _wait_ready(sim, consumers)
        run.note("all processes ready; faults on")
        httpx.post(f"{sim.url}/sim/faults", json=FAULTS).raise_for_status()
        _publish_with_chaos(run, publisher, consumers, supervisor, private_rabbitmq, private_postgres)
        terminal_ok = _wait_terminal(run, supervisor)
        # Read before the change below re-seeds (and empties) the event filters.
        run.event_faults, run.dropped_exec_ids = _event_faults(sim)
        httpx.post(f"{sim.url}/sim/faults", json=NO_FAULTS).raise_for_status()
        faults_stopped = time.monotonic()
        run.note(f"faults off (all terminal: {terminal_ok})")
        differences = _converge(sim, deadline=faults_stopped + CONVERGE_SECONDS)
        converged_after = time.monotonic() - faults_stopped
        outcome = "NOT reached" if any(differences.values()) else "reached"
        run.note(f"convergence {outcome} after {converged_after:.0f}s")
        report = _properties(run, supervisor, differences, converged_after)
    finally:
        supervisor.stop()
        publisher.close()
        for proc in processes:
            proc.stop()
    failed = [line for ok, line in report if not ok]
    text = "\n".join(("PASS " if ok else "FAIL ") + line for ok, line in report)
    text += "\n\nchaos timeline:\n  " + "\n  ".join(run.events)
    text += "\n\nfrom the process logs:\n  " + "\n  ".join(_log_summary(processes)) + f"\nprocess logs: {tmp_path}"
    (tmp_path / "chaos-report.txt").write_text(text + "\n")
    print(text)
    assert not failed, f"{len(failed)} chaos properties failed:\n{text}"


def _wait_ready(sim: SimulatorServer, consumers: list[ServiceProcess]) -> None:
    from orders.models import ReconciliationRun

    _until(lambda: _db(lambda: ReconciliationRun.objects.using(DB).filter(trigger="startup")
                       .exclude(status="running").count()) >= len(consumers),
           timeout=120, what="both consumers' startup reconciliation")

    def connected() -> bool:
        subs = httpx.get(f"{sim.url}/ws-gateway/api/v1/subscriptions", headers={"X-API-Key": GATEWAY_KEY})
        return any(s["connected"] for s in subs.json()["subscriptions"])

    _until(connected, timeout=120, what="ws-gateway (the simulator) connected to our uvicorn endpoint")


def _publish_with_chaos(run: Run, publisher: Publisher, consumers, supervisor: Supervisor, rabbit, postgres) -> None:
    """Publish at RATE/s while a thread of chaos works through its plan (so the publisher lives through the
    broker's restart too); returns when both are done."""
    rng = random.Random(SEED)
    symbols = sorted(run.sim.engine.prices)
    duration = SIGNALS / RATE
    # (fraction of the publishing time, action): kills of each consumer, one broker and one database restart
    # (during which the first consumer is killed and restarted, so it starts while PostgreSQL is down).
    plan = [(0.12, "kill a"), (0.28, "restart rabbitmq"), (0.55, "kill b"), (0.68, "restart postgres"),
            (0.95, "kill b")]
    begin = time.monotonic()
    errors: list[BaseException] = []

    def chaos() -> None:
        try:
            for fraction, action in plan:
                delay = begin + fraction * duration - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the plan's moment for this action
                _chaos(action, run, consumers, supervisor, rabbit, postgres)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=chaos, name="chaos", daemon=True)
    thread.start()
    for index in range(SIGNALS):
        delay = begin + index / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the publisher at RATE signals/s
        body = random_signal(rng, symbols, dict(run.sim.engine.prices))
        publisher.publish(body)
        run.published.append(uuid.UUID(body["signal_id"]).hex)
    run.note(f"{len(run.published)} signals published ({publisher.reconnects} publish errors retried)")
    thread.join(120)
    assert not thread.is_alive(), "the chaos plan did not finish"
    if errors:
        raise errors[0]


def _chaos(action: str, run: Run, consumers, supervisor: Supervisor, rabbit, postgres) -> None:
    run.note(action)
    if action.startswith("kill "):
        consumer = consumers["ab".index(action[-1])]
        with supervisor.lock:
            consumer.kill9()
            consumer.start()
    elif action == "restart rabbitmq":
        rabbit.restart(down_seconds=3)
        run.note("rabbitmq back")
    elif action == "restart postgres":
        postgres.stop(mode="immediate")
        time.sleep(1.5)  # the outage: the database stays down while a consumer is killed and restarted
        run.note("kill a (restarted while PostgreSQL is down)")
        with supervisor.lock:
            consumers[0].kill9()
            consumers[0].start()
        time.sleep(8.0)  # the outage goes on past that consumer's start-up (Django boots in a few seconds)
        postgres.start()
        run.note("postgres back")


def _wait_terminal(run: Run, supervisor: Supervisor) -> bool:
    ids = [uuid.UUID(h) for h in run.published]

    def done() -> bool:
        rows = _db(lambda: TradingSignal.objects.using(DB).filter(signal_id__in=ids)
                   .exclude(status__in=UNFINISHED).count())
        return rows >= len(ids)

    try:
        _until(done, timeout=TERMINAL_SECONDS, what="every signal terminal", interval=1.0)
        return True
    except AssertionError:
        return False


# ---------------------------------------------------------------------------------------------- comparisons
def _differences(sim: SimulatorServer) -> dict[str, list[str]]:
    """Our orders, executions and positions against the simulator's (empty lists: equal)."""
    engine = sim.engine
    with engine.lock:
        sim_orders = {o.order_link_id: (o.order_id, o.status, o.cum_exec_qty) for o in engine.orders.values()}
        sim_execs = {e.exec_id for e in engine.executions}
        sim_positions = {(p.symbol, p.position_idx): (p.size if p.side == "Buy" else -p.size, p.avg_price)
                         for p in engine.positions.values() if p.size}
    ours = _db(lambda: {o.order_link_id: o for o in Order.objects.using(DB).only(
        "order_link_id", "order_id", "status", "filled_qty")})
    orders = []
    for link, (order_id, status, cum) in sim_orders.items():
        mine = ours.get(link)
        if mine is None:
            orders.append(f"{link} on the exchange ({status}) has no order of ours")
        elif (mine.order_id, mine.status, mine.filled_qty) != (order_id, BYBIT_STATUS[status], cum):
            orders.append(f"{link} ours {mine.status} filled {mine.filled_qty} id {mine.order_id or '-'} != "
                          f"exchange {status} filled {cum}")
    for link, mine in ours.items():
        if link not in sim_orders and mine.status in OUR_OPEN:
            orders.append(f"{link} ours {mine.status} is not on the exchange")
    our_execs = set(_db(lambda: list(Execution.objects.using(DB).values_list("exec_id", flat=True))))
    executions = [f"missing {e}" for e in sorted(sim_execs - our_execs)] + \
                 [f"not on the exchange {e}" for e in sorted(our_execs - sim_execs)]
    our_positions = {(p.symbol, p.position_idx): (p.signed_size, p.avg_entry_price)
                     for p in _db(lambda: list(Position.objects.using(DB).all())) if p.size}
    positions = []
    for key in sorted(set(sim_positions) | set(our_positions)):
        theirs, mine = sim_positions.get(key, (D(0), D(0))), our_positions.get(key, (D(0), D(0)))
        if theirs[0] != mine[0] or (theirs[0] and abs(theirs[1] - mine[1]) > D("1e-6")):
            positions.append(f"{key[0]}[{key[1]}] ours {mine[0]} @ {mine[1]} != exchange {theirs[0]} @ {theirs[1]}")
    return {"orders": orders, "executions": executions, "positions": positions}


# Info-level log events worth counting: which position source each decision used (fresh-position rule),
# re-plans, holds and their outcomes.
COUNTED_INFO = {"position_source", "signal_replanned", "symbol_released", "given_up_order_not_placed",
                "reconcile_pending_left_to_hold"}


def _log_summary(processes: list[ServiceProcess]) -> list[str]:
    """Per process: warnings and errors by event, and the counted info events (position sources by path)."""
    lines = []
    for proc in processes:
        counts = Counter()
        text = proc.log_path.read_text(errors="replace") if proc.log_path.exists() else ""
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            event, level = str(entry.get("event", ""))[:60], entry.get("level")
            if event == "position_source":
                counts[f"position_source:{entry.get('path')}"] += 1
            elif level in ("warning", "error", "critical") or event in COUNTED_INFO:
                counts[f"{level}:{event}"] += 1
        lines.append(f"{proc.name} (started {proc.starts}x): " +
                     (", ".join(f"{k} {v}" for k, v in counts.most_common()) or "nothing notable"))
    return lines


def _event_faults(sim: SimulatorServer) -> tuple[dict, set]:
    """Event-fault counts over the pushed streams, and the execution ids in the messages they dropped."""
    counts, dropped = Counter(), set()
    with sim.engine.lock:
        for sink in sim.engine._sinks:
            if sink.filter is not None:
                counts.update(sink.filter.counts)
                dropped.update(item["execId"] for m in sink.filter.dropped if m["topic"] == "execution"
                               for item in m["data"])
    return dict(counts), dropped


def _converge(sim: SimulatorServer, *, deadline: float) -> dict[str, list[str]]:
    while True:
        differences = _differences(sim)
        if not any(differences.values()) or time.monotonic() > deadline:
            return differences
        time.sleep(2.0)  # polling the comparison until the deadline


def _properties(run: Run, supervisor: Supervisor, differences: dict, converged_after: float) -> list:
    engine = run.sim.engine
    with engine.lock:
        sim_orders = sorted(engine.orders.values(), key=lambda o: o.n)
        links_unique = len(engine.orders) == len(engine.orders_by_link)
        faults = dict(run.sim.state.faults.counts)
    ids = [uuid.UUID(h) for h in run.published]
    signals = _db(lambda: {s.signal_id.hex: s for s in TradingSignal.objects.using(DB).filter(signal_id__in=ids)
                           .only("id", "signal_id", "status", "asset", "reason")})
    our_orders = _db(lambda: list(Order.objects.using(DB).only("order_link_id", "status", "reject_code",
                                                               "reject_reason", "symbol")))
    report = []

    # 0 lost: every published signal is in the inbox and terminal.
    missing = [h for h in run.published if h not in signals]
    unfinished = [h for h, s in signals.items() if s.status not in TERMINAL]
    statuses = Counter(s.status for s in signals.values())
    report.append((not missing and not unfinished,
                   f"0 lost: {len(run.published)} published, {len(missing)} never in the inbox, {len(unfinished)} "
                   f"not terminal (statuses {dict(statuses)})"))

    # 0 doubled: one exchange order per (signal, leg) and none unknown to us.
    per_signal = Counter(o.order_link_id.split("-")[0] for o in sim_orders)
    our_links = {o.order_link_id for o in our_orders}
    legs = Counter(link.split("-")[0] for link in our_links)
    doubled = [h for h, n in per_signal.items() if n > max(1, legs.get(h, 0))]
    strangers = [o.order_link_id for o in sim_orders if o.order_link_id not in our_links]
    duplicates_refused = sum(1 for o in our_orders if o.reject_code == 110072)
    report.append((links_unique and not doubled and not strangers,
                   f"0 doubled: {len(sim_orders)} exchange orders, {len(doubled)} signals with more orders than "
                   f"legs, {len(strangers)} exchange orders unknown to us, orderLinkIds unique: {links_unique} "
                   f"({duplicates_refused} creates refused as duplicate orderLinkId)"))

    # Per-symbol FIFO on the exchange: creation order per symbol follows the signals' arrival (inbox) order.
    arrival = {h: s.id for h, s in signals.items()}
    by_symbol = defaultdict(list)
    for o in sim_orders:
        h = o.order_link_id.split("-")[0]
        if h in arrival:
            by_symbol[o.symbol].append((arrival[h], o.order_link_id, o.created_ms))
    inversions = []
    for symbol, seq in by_symbol.items():
        for (a_rank, a_link, a_ms), (b_rank, b_link, b_ms) in zip(seq, seq[1:], strict=False):
            if b_rank < a_rank:
                inversions.append(f"{symbol}: {b_link} ({signals[b_link.split('-')[0]].status}) created "
                                  f"{(b_ms - a_ms) / 1000:.1f}s after its successor {a_link}")
    publish_rank = {h: i for i, h in enumerate(run.published)}
    inbox_inversions = 0
    for symbol in {s.asset for s in signals.values()}:
        ranks = [publish_rank[h] for h, s in sorted(signals.items(), key=lambda kv: kv[1].id) if s.asset == symbol]
        inbox_inversions += sum(1 for a, b in zip(ranks, ranks[1:], strict=False) if b < a)
    report.append((not inversions, f"per-symbol FIFO on the exchange: {len(inversions)} inversions over "
                                   f"{len(by_symbol)} symbols {inversions[:5]} (inbox vs publish order: "
                                   f"{inbox_inversions} inversions)"))

    # No failed signal whose order filled (nor a rejected one: the signal's status follows what really happened).
    filled = {o.order_link_id.split("-")[0] for o in sim_orders if o.cum_exec_qty > 0}
    failed_filled = [h for h, s in signals.items() if s.status == SignalStatus.FAILED and h in filled]
    rejected_filled = [h for h, s in signals.items() if s.status == SignalStatus.REJECTED and h in filled]
    report.append((not failed_filled and not rejected_filled,
                   f"no failed signal with a filled order: {len(failed_filled)} of {statuses.get('failed', 0)} failed "
                   f"and {len(rejected_filled)} of {statuses.get('rejected', 0)} rejected signals have a filled "
                   f"order on the exchange {(failed_filled + rejected_filled)[:5]}"))

    # 0 reduce-only refusals (110017): our book said the position was there, the exchange's was not.
    refused = [o for o in our_orders if o.reject_code == 110017]
    report.append((not refused, f"0 reduce-only refusals from a stale book: {len(refused)} orders refused "
                                f"110017 {[o.order_link_id for o in refused[:5]]}"))

    # The live path alone converges: no manual reconcile.
    counts = {k: len(v) for k, v in differences.items()}
    missing_execs = {line.split()[-1] for line in differences["executions"] if line.startswith("missing ")}
    never_sent = len(missing_execs & run.dropped_exec_ids)
    examples = {k: v[:3] for k, v in differences.items() if v}
    report.append((not any(differences.values()),
                   f"book equals the exchange within {CONVERGE_SECONDS:.0f}s of the faults stopping, no manual "
                   f"reconcile: {f'yes after {converged_after:.0f}s' if not any(counts.values()) else 'no'}; "
                   f"differences {counts}; of {len(missing_execs)} missing executions {never_sent} were in private "
                   f"messages the simulator dropped and {len(missing_execs) - never_sent} were delivered but not "
                   f"booked; {examples}"))

    # Processes stay up: none exited on its own (each was restarted, as a supervisor would).
    exits = [f"{name} exit {code}: {tail.splitlines()[-1] if tail else ''}" for _, name, code, tail in supervisor.exits]
    report.append((not exits, f"no process exited on its own: {len(exits)} exits {exits[:5]}"))

    create_calls = _db(lambda: list(ExchangeCall.objects.using(DB).filter(path="/v5/order/create")
                                    .values_list("http_status", "error")))
    unclear = sum(1 for status, error in create_calls if error or (status or 0) >= 500)
    run.note(f"simulator request faults {faults}, private-event faults {run.event_faults}; exchange orders "
             f"{len(sim_orders)}, executions {len(engine.executions)}; audited creates {len(create_calls)}, of "
             f"which {unclear} without a clear answer (5xx, timeout, transport error)")
    return report
