"""Helpers for the end-to-end runs: RabbitMQ + PostgreSQL + the simulator + real consume_signals processes.

Counts scale with ``E2E_SCALE`` (default 1: the issue's numbers); e.g. ``E2E_SCALE=0.2`` for a quick run.
"""

from __future__ import annotations

import json
import os
import random
import signal as os_signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

from django.db import connection
from kombu import Connection, Producer

from signals_app.amqp import dead_letter_queue, ingress_queue, queue_ensure, signal_publish

ROOT = Path(__file__).resolve().parents[3]
SCALE = float(os.environ.get("E2E_SCALE", "1"))
EXTRA_SYMBOLS = [f"S{i:02d}USDT" for i in range(1, 16)]  # the simulator lists 5; the runs need 20


def scaled(count: int) -> int:
    return max(10, int(count * SCALE))


def wait_until(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # polling a condition with a deadline, not waiting for a state


@contextmanager
def twenty_symbols(simulator):
    """List 15 more linear instruments on the simulator for this test (its next reset drops them)."""
    simulator.reset()
    simulator.add_instruments([
        {"symbol": symbol, "price": "100.00", "tickSize": "0.01", "maxPrice": "199999.98", "qtyStep": "0.01",
         "minOrderQty": "0.01", "maxOrderQty": "100000", "maxMktOrderQty": "10000", "minNotionalValue": "5",
         "maxLeverage": "50"}
        for symbol in EXTRA_SYMBOLS
    ])
    _unthrottle(simulator)
    try:
        yield sorted(simulator.engine.prices)
    finally:
        simulator.reset()


def _unthrottle(simulator) -> None:
    import httpx

    # Bybit's 10 orders/s per UID would make a 2,000-signal run take minutes; throughput is not the point here.
    httpx.post(f"{simulator.url}/sim/rate-limits", json={"scale": 1000}).raise_for_status()


def random_signal(rng: random.Random, symbols: list[str], prices: dict[str, D], **overrides) -> dict:
    symbol = overrides.get("asset") or rng.choice(symbols)
    price = prices.get(symbol, D(100))
    body = {
        "signal_id": str(uuid.uuid4()),
        "signal_type": rng.choice(["buy", "sell"]),
        "asset": symbol,
        "amount": str(D(rng.randint(600, 20000)) / 100),  # 6..200 USDT: some below the 5 USDT/min qty rules
        "confidence": rng.choice([0.3, 0.5, 0.7, 0.9, 0.95]),
        "timestamp": datetime.now(UTC).isoformat(),
        "strategy_id": f"e2e-{rng.randint(1, 3)}",
        "metadata": {"urgency": rng.random() < 0.2},
        "trace_id": uuid.uuid4().hex[:16],
    }
    if rng.random() < 0.9:
        offset = D(rng.randint(-50, 50)) / 10000
        body["market_data_snapshot"] = {"price": str((price * (1 + offset)).quantize(D("0.0001"))),
                                        "spread": str((price * D("0.0002")).quantize(D("0.0001")))}
    body.update(overrides)
    return body


class Broker:
    """Publisher and queue inspection on a per-test queue name."""

    def __init__(self, amqp_url: str, queue_name: str):
        self.url = amqp_url
        self.queue = ingress_queue(queue_name)
        self.dead = dead_letter_queue(f"{queue_name}.dead")
        self.conn = Connection(amqp_url, transport_options={"confirm_publish": True})
        self.producer = Producer(self.conn.default_channel)
        # As it exists when a producer declared it first (e.g. a quorum queue); otherwise durable, no arguments.
        queue_ensure(self.conn.connection, self.queue)
        queue_ensure(self.conn.connection, self.dead)

    def publish(self, body: bytes | dict) -> float:
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        signal_publish(body=raw, connection=self.conn, queue=self.queue, producer=self.producer)
        return time.monotonic()

    def depth(self, queue) -> int:
        return queue.bind(self.conn.default_channel).queue_declare(passive=True).message_count

    def drain_dead(self) -> list:
        messages = []
        channel = self.conn.channel()
        bound = self.dead.bind(channel)
        while True:
            message = bound.get(no_ack=True)
            if message is None:
                break
            messages.append(message)
        channel.close()
        return messages

    def close(self) -> None:
        for queue in (self.queue, self.dead):
            try:
                queue.bind(self.conn.default_channel).delete()
            except Exception:
                pass
        self.conn.release()


def database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class ConsumerProcess:
    """``manage.py consume_signals`` (or ``command``) in a child process with this test's broker, database and
    simulator."""

    def __init__(self, *, amqp_url: str, queue_name: str, simulator, log_dir: Path, threads: int = 4,
                 extra_env: dict | None = None, name: str = "consumer", command: str = "consume_signals"):
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ordermanager.settings.base",
            "DATABASE_URL": database_url(),
            "SIGNAL_BROKER_URL": amqp_url,
            "SIGNAL_QUEUE": queue_name,
            "SIGNAL_DEAD_LETTER_QUEUE": f"{queue_name}.dead",
            "ORDER_EVENTS_EXCHANGE": f"{queue_name}.events",
            "BYBIT_ENV": "simulator",
            "BYBIT_BASE_URL": simulator.url,
            "BYBIT_API_KEY": simulator.api_key,
            "BYBIT_API_SECRET": simulator.api_secret,
            "BYBIT_API_RETRY_BASE_DELAY": "0.05",
            "BYBIT_API_RETRY_MAX_DELAY": "0.2",
            "SIGNAL_PROCESSOR_THREADS": str(threads),
            "ALLOW_SHORT": "true",
            "LOG_LEVEL": "warning",
            "REDIS_URL": "",
            **(extra_env or {}),
        }
        self.command = command
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> ConsumerProcess:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen([sys.executable, "manage.py", self.command], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(os_signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(os_signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
