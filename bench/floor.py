"""The machine's floors, measured in the same run as a benchmark's figure (issue #17).

A figure means little without what the same machine can do at best right now, so every bench prints the
floor it measured beside its own figure and the ratio between them:

- ``commit_floor``: serial single-row ``INSERT`` + ``COMMIT`` on one connection (psycopg, autocommit), into
  an ordinary (WAL-logged) table, as our transactions commit. On the cluster ``scripts/services.sh`` starts
  (fsync and synchronous_commit off) about 4,000/s on a 2-core machine; with Debian's durable defaults
  about 1,550/s.
- ``http_floor``: a bare httpx create+cancel round trip to the simulator (signed by hand, no checks, no
  audit; ``BareBybit``), per HTTP call.

``SimulatorProcess`` runs the simulator in a child process, so it does not share the bench's GIL.

    .venv/bin/python bench/floor.py        # both floors, printed
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SYMBOL = "BTCUSDT"
FLOOR_TABLE = "bench_commit_floor"


@dataclass(frozen=True)
class Floor:
    label: str
    per_s: float  # operations per second, serial
    p50_ms: float  # median time of one operation

    def line(self) -> str:
        return f"floor, {self.label}: {self.per_s:,.0f}/s (p50 {self.p50_ms:.3f} ms)"

    def ratio(self, per_s: float) -> str:
        """A figure in operations per second as a share of this floor."""
        return f"{per_s / self.per_s:.2f}x the {self.label} floor"


def _db_url(db_url: str | None) -> str:
    url = db_url or os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if not url or not url.startswith(("postgres://", "postgresql://")):
        sys.exit(f"the commit floor is measured on PostgreSQL; got {url!r}")
    return url


def commit_floor(db_url: str | None = None, *, n: int = 2000) -> Floor:
    """Serial single-row INSERT+COMMIT on one connection; the table is created if missing and emptied."""
    import psycopg

    with psycopg.connect(_db_url(db_url), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (id bigserial PRIMARY KEY, v integer NOT NULL)")
        conn.execute(f"TRUNCATE {FLOOR_TABLE}")
        settings = conn.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')").fetchone()
        insert = f"INSERT INTO {FLOOR_TABLE} (v) VALUES (%s)"
        for i in range(50):  # warm up: connection, plan, WAL segment
            conn.execute(insert, (i,), prepare=True)
        times = []
        started = time.perf_counter()
        for i in range(n):
            t0 = time.perf_counter()
            conn.execute(insert, (i,), prepare=True)
            times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        conn.execute(f"TRUNCATE {FLOOR_TABLE}")
    label = f"INSERT+COMMIT, fsync {settings[0]}, synchronous_commit {settings[1]}"
    return Floor(label, n / elapsed, statistics.median(times) * 1000)


class BareBybit:
    """The least code that can place and cancel a signed order: the HTTP floor."""

    def __init__(self, base_url: str, api_key: str, api_secret: str):
        import httpx

        self.base_url, self.api_key, self.secret = base_url, api_key, api_secret.encode()
        self.http = httpx.Client(timeout=5.0)
        self.offset_ms = 0

    def post(self, path: str, params: dict) -> dict:
        body = json.dumps(params, separators=(",", ":"))
        ts = str(int(time.time() * 1000) + self.offset_ms)
        sign = hmac.new(self.secret, f"{ts}{self.api_key}5000{body}".encode(), hashlib.sha256).hexdigest()
        headers = {"X-BAPI-API-KEY": self.api_key, "X-BAPI-TIMESTAMP": ts, "X-BAPI-RECV-WINDOW": "5000",
                   "X-BAPI-SIGN": sign, "X-BAPI-SIGN-TYPE": "2", "Content-Type": "application/json"}  # fmt: skip
        return self.http.post(f"{self.base_url}{path}", content=body.encode(), headers=headers).json()

    def get(self, path: str, params: dict) -> dict:
        return self.http.get(f"{self.base_url}{path}", params=params).json()

    def round_trip(self, link: str, price: Decimal) -> None:
        order = {"category": "linear", "symbol": SYMBOL, "side": "Buy", "orderType": "Limit", "qty": "0.001",
                 "price": str(price), "timeInForce": "PostOnly", "positionIdx": 0, "orderLinkId": link}  # fmt: skip
        created = self.post("/v5/order/create", order)
        cancelled = self.post("/v5/order/cancel", {"category": "linear", "symbol": SYMBOL, "orderLinkId": link})
        if created["retCode"] or cancelled["retCode"]:
            raise RuntimeError(f"baseline call failed: {created['retMsg']} / {cancelled['retMsg']}")

    def sync_clock(self) -> None:
        server_ms = int(self.get("/v5/market/time", {})["result"]["timeNano"]) // 1_000_000
        self.offset_ms = server_ms - int(time.time() * 1000)

    def far_price(self) -> Decimal:
        """Half the last price: a PostOnly Buy there rests."""
        ticker = self.get("/v5/market/tickers", {"category": "linear", "symbol": SYMBOL})["result"]["list"][0]
        return (Decimal(ticker["lastPrice"]) / 2).quantize(Decimal("0.1"))


def http_floor(base_url: str, api_key: str, api_secret: str, *, n: int = 300) -> Floor:
    """Bare httpx create+cancel round trips to the simulator; the figure is per HTTP call (two per trip)."""
    bare = BareBybit(base_url, api_key, api_secret)
    bare.sync_clock()
    price = bare.far_price()
    run = uuid.uuid4().hex[:8]
    for i in range(20):
        bare.round_trip(f"fw{run}-{i}", price)
    times = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        bare.round_trip(f"f{run}-{i}", price)
        times.append((time.perf_counter() - t0) / 2)
    elapsed = time.perf_counter() - started
    return Floor("bare httpx call to the simulator", 2 * n / elapsed, statistics.median(times) * 1000)


def _serve(api_key: str, api_secret: str, urls, stop) -> None:
    from exchange.simulator.server import SimulatorServer

    with SimulatorServer(api_key=api_key, api_secret=api_secret) as sim:
        urls.put(sim.url)
        stop.wait()


class SimulatorProcess:
    """A SimulatorServer in a child process (fork: it inherits the configured Django)."""

    def __init__(self, api_key: str = "bench-key", api_secret: str = "bench-secret"):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.api_key, self.api_secret = api_key, api_secret
        self._urls, self._stop = ctx.Queue(), ctx.Event()
        self._process = ctx.Process(target=_serve, args=(api_key, api_secret, self._urls, self._stop), daemon=True)

    def __enter__(self) -> SimulatorProcess:
        self._process.start()
        self.url = self._urls.get(timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._process.join(timeout=10)

    def http_floor(self, *, n: int = 300) -> Floor:
        return http_floor(self.url, self.api_key, self.api_secret, n=n)


def main() -> None:
    from bench._django import setup_postgres

    db_url = os.environ.get("BENCH_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/om_bench_client"
    setup_postgres(db_url)
    print(commit_floor(db_url).line())
    import httpx
    from django.db import connection

    connection.close()
    with SimulatorProcess() as sim:
        httpx.post(f"{sim.url}/sim/rate-limits", json={"scale": 100000}).raise_for_status()
        print(sim.http_floor().line())


if __name__ == "__main__":
    main()
