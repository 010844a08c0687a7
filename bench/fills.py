"""Fill figures on PostgreSQL: ingest rate through the ws-gateway endpoint, validation time.

    .venv/bin/python bench/fills.py                    # both, defaults below
    .venv/bin/python bench/fills.py --validation 1000000 --positions 100 --skip-ingest
    .venv/bin/python bench/fills.py --skip-validation --ingest 20000 --connections 4 --batch 1
    .venv/bin/python bench/fills.py --skip-validation --shape market --ingest 4000   # order+execution+position

Uses its own database (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/om_bench_fills),
migrated and emptied first.

- Ingest: uvicorn serves ``ordermanager.asgi:application`` on a free port in a
  child process; N WebSocket clients (as ws-gateway would connect) send
  execution messages of ``--batch`` fills each for ``--symbols`` symbols; the
  clock runs until every Execution row is in the database (polled), so the
  figure is end to end: frame → parse → transaction (execution, order, ledger,
  position) → commit. Printed: messages/s, executions/s, the server process's
  CPU ms per message, and the commit floor measured in the same run with the
  ratio to it (``bench.floor``; docs/decisions/0419). ``--shape market``: per fill the order, execution
  and position messages the simulator pushes for a market order (``--ingest`` fills), timed to the pong after
  the last frame; prints fills/s, messages/s, CPU ms per message and per fill (docs/decisions/0424).
- Validation: ``--validation`` executions (with ~1% funding rows) spread over
  ``--positions`` positions are generated with their ledger states by the same
  fold the service uses and loaded with COPY; then the recompute
  (``positions_recompute_differences``: parallel slices, then one statement), the full
  service (``positions_validate_against_fills``) and an incremental run after fills on
  3 symbols are timed, with the commit floor of the same run. All must find nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import socket
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import uvicorn
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import setup_postgres  # noqa: E402
from bench.floor import Floor, commit_floor  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/om_bench_fills"
BASE_MS = 1_767_225_600_000
GATEWAY_KEY = "bench-gateway-key"


def _empty() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE positions_positionledgerentry, positions_positionsnapshot, positions_positiondiscrepancy,"
            " positions_position, orders_execution, orders_order RESTART IDENTITY CASCADE"
        )


# --- validation ---------------------------------------------------------------------------


def bench_validation(total: int, positions: int, seed: int, changed: int = 3) -> dict:
    """The full recompute (parallel slices and one statement), the service, and an incremental run after fills
    on ``changed`` symbols, with the commit floor measured in the same run."""
    # Imports here: they need django.setup() (_setup) first, like the rest of this bench.
    from django.db import connection

    from bench.floor import commit_floor
    from orders.selectors.validation import MAX_WORKERS, positions_recompute_differences
    from orders.services.position_validation import positions_validate_against_fills
    from positions.models import PositionValidationRun

    floor = commit_floor(_db_url())
    print(floor.line(), flush=True)
    _empty()
    PositionValidationRun.objects.all().delete()
    started = time.perf_counter()
    _generate(total, positions, seed)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE orders_execution")
        cursor.execute("VACUUM ANALYZE positions_positionledgerentry")
        cursor.execute("VACUUM ANALYZE positions_position")
    setup_s = time.perf_counter() - started
    default_workers = min(os.cpu_count() or 1, MAX_WORKERS)
    timings: dict[str, list[float]] = {}
    for label, workers in (("parallel", default_workers), ("one_statement", 1)):
        timings[label] = []
        for _ in range(3):
            t0 = time.perf_counter()
            differences = positions_recompute_differences(workers=workers)
            timings[label].append(time.perf_counter() - t0)
            assert differences == [], differences[:3]
    t0 = time.perf_counter()
    recorded = positions_validate_against_fills()
    service_s = time.perf_counter() - t0
    assert recorded == []
    incremental = _bench_incremental(total // positions, changed)
    return {
        "floor": floor.line(),
        "load_average_1m": round(os.getloadavg()[0], 1),
        "executions": total,
        "positions": positions,
        "setup_seconds": round(setup_s, 1),
        "workers": default_workers,
        "query_seconds_best": round(min(timings["parallel"]), 3),
        "query_seconds_all": [round(t, 3) for t in timings["parallel"]],
        "one_statement_seconds_all": [round(t, 3) for t in timings["one_statement"]],
        "service_seconds": round(service_s, 3),
        **incremental,
    }


def _db_url() -> str:
    return os.environ["DATABASE_URL"]


def _bench_incremental(per: int, changed: int) -> dict:
    """Runs on a schedule: one 30 and one 5 minutes ago saw the book; since then one fill on each of ``changed``
    symbols (through the position ledger, as the fill path writes it). The incremental run validates those."""
    from datetime import timedelta

    # Imports here: they need django.setup() (_setup) first, like the rest of this bench.
    from django.db.models import Max
    from django.utils import timezone

    from orders.models import Execution
    from orders.services.position_validation import positions_validate_against_fills
    from positions.models import PositionLedgerEntry, PositionValidationRun
    from positions.services.ledger import position_apply_fill

    highs = {
        "executions_high": Execution.objects.aggregate(h=Max("pk"))["h"],
        "ledger_high": PositionLedgerEntry.objects.aggregate(h=Max("pk"))["h"],
    }
    now = timezone.now()
    for ago in (30, 5):
        at = now - timedelta(minutes=ago)
        PositionValidationRun.objects.create(started_at=at, finished_at=at, **highs)
    ms = BASE_MS + per * 50 + 1000
    for p in range(changed):
        symbol, exec_id = f"B{p:04d}USDT", f"bench-incremental-{p}"
        Execution.objects.create(
            exec_id=exec_id, symbol=symbol, side="Buy", exec_type="Trade", exec_qty=Decimal("0.001"),
            exec_price=Decimal(60000), exec_fee=Decimal(0), exec_time=_iso(ms), seq=per, source="bench",
        )  # fmt: skip
        position_apply_fill(
            category="linear", symbol=symbol, position_idx=0, side="Buy", qty=Decimal("0.001"),
            price=Decimal(60000), fee=Decimal(0), exec_type="Trade", exec_time=ms, exec_id=exec_id, seq=per,
        )  # fmt: skip
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        recorded = positions_validate_against_fills(incremental=True)
        timings.append(time.perf_counter() - t0)
        assert recorded == [], recorded[:3]
    run = PositionValidationRun.objects.order_by("-started_at").first()
    assert not run.full and run.symbols == changed, (run.full, run.symbols)
    return {
        "incremental_symbols": changed,
        "incremental_seconds_best": round(min(timings), 3),
        "incremental_seconds_all": [round(t, 3) for t in timings],
    }


def _generate(total: int, positions: int, seed: int) -> None:
    from django.db import connection

    from positions.services.position_math import PositionState, apply_execution

    rng = random.Random(seed)
    per = total // positions
    position_rows = []
    exec_cols = (
        "exec_id, exchange_order_id, order_link_id, category, symbol, side, exec_type, exec_qty, exec_price,"
        " exec_value, exec_fee, fee_currency, is_maker, position_idx, exec_time, seq, source, created_at"
    )
    ledger_cols = (
        "position_id, position_idx, exec_id, exec_type, exec_time_ms, seq, side, qty, price, fee, flag,"
        " size_after, avg_entry_after, realized_after, fees_after, funding_after, created_at"
    )
    now = "2026-01-01T00:00:00+00:00"
    raw = connection.connection  # psycopg connection for COPY
    with raw.cursor() as cursor:
        for p in range(positions):
            symbol = f"B{p:04d}USDT"
            cursor.execute(
                "INSERT INTO positions_position (category, symbol, position_idx, mode, size, avg_entry_price,"
                " realized_pnl, fees_paid, funding_paid, unrealized_pnl, last_exec_ms, last_exec_seq, last_exec_id,"
                " loss_warning_active, created_at, updated_at) VALUES ('linear', %s, 0, 'one_way', 0, 0, 0, 0, 0, 0,"
                " 0, 0, '', false, now(), now()) RETURNING id",
                [symbol],
            )
            position_id = cursor.fetchone()[0]
            state = PositionState()
            price = Decimal(60000)
            ex_rows, led_rows = [], []
            for n in range(per):
                ms = BASE_MS + n * 50
                exec_id = str(uuid.UUID(int=rng.getrandbits(128)))
                price += Decimal(rng.randint(-500, 500)) / 10
                if rng.random() < 0.01:
                    exec_type, side, qty, fee = "Funding", "Buy", Decimal(1), Decimal(rng.randint(-100, 100)) / 1000
                else:
                    exec_type, side = "Trade", rng.choice(("Buy", "Sell"))
                    qty = Decimal(rng.randint(1, 2000)) / 1000
                    fee = (qty * price * Decimal("0.00055")).quantize(Decimal("1e-8"))
                step = apply_execution(state, exec_type=exec_type, side=side, qty=qty, price=price, fee=fee)
                state = step.state
                ex_rows.append(
                    (exec_id, "", "", "linear", symbol, side, exec_type, qty, price, qty * price, fee, "USDT",
                     False, 0, _iso(ms), n, "bench", now)
                )  # fmt: skip
                led_rows.append(
                    (position_id, 0, exec_id, exec_type, ms, n, side, qty, price, fee, step.flag,
                     state.size, state.avg_entry_price, state.realized_pnl, state.fees_paid, state.funding_paid, now)
                )  # fmt: skip
            with cursor.copy(f"COPY orders_execution ({exec_cols}) FROM STDIN") as copy:
                for row in ex_rows:
                    copy.write_row(row)
            with cursor.copy(f"COPY positions_positionledgerentry ({ledger_cols}) FROM STDIN") as copy:
                for row in led_rows:
                    copy.write_row(row)
            position_rows.append((position_id, state, BASE_MS + (per - 1) * 50, per - 1, exec_id))
        for position_id, state, ms, seq, exec_id in position_rows:
            cursor.execute(
                "UPDATE positions_position SET size=%s, avg_entry_price=%s, realized_pnl=%s, fees_paid=%s,"
                " funding_paid=%s, last_exec_ms=%s, last_exec_seq=%s, last_exec_id=%s WHERE id=%s",
                [state.size, state.avg_entry_price, state.realized_pnl, state.fees_paid, state.funding_paid, ms, seq,
                 exec_id, position_id],
            )  # fmt: skip
    raw.commit() if not raw.autocommit else None


def _iso(ms: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).isoformat()


# --- ingest through the endpoint ------------------------------------------------------------------


def _serve(sock: socket.socket) -> None:
    # No keepalive pings (server here, client below): the benchmark floods on purpose, and while the
    # consumer lags, the server stops reading the socket (back pressure), so a ping or pong sits unread
    # behind data frames and one side closes the connection (1011) with frames still queued.
    config = uvicorn.Config(
        "ordermanager.asgi:application", log_level="warning", access_log=False, lifespan="off", ws_ping_interval=None
    )
    uvicorn.Server(config).run(sockets=[sock])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served(clients, connections: int) -> tuple[float, float]:
    """Serve the endpoint in a child process, open ``connections`` WebSocket clients, and time
    ``await clients(sockets)``: (seconds, the server process's CPU seconds)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    server.start()
    url = f"ws://127.0.0.1:{port}/ws/gateway/"
    headers = {"X-API-Key": GATEWAY_KEY}

    async def connected(deadline: float):
        while True:
            try:
                return await websockets.connect(
                    url, additional_headers=headers, max_queue=None, ping_interval=None, compression=None
                )
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def run() -> tuple[float, float]:
        sockets = [await connected(time.monotonic() + 30) for _ in range(connections)]
        await asyncio.sleep(0.5)  # the connect-time work (heartbeat, backfill mark) is not the figure's
        cpu0, t0 = _cpu_seconds(server.pid), time.perf_counter()
        await clients(sockets)
        elapsed, cpu = time.perf_counter() - t0, _cpu_seconds(server.pid) - cpu0
        for ws in sockets:
            await ws.close()
        return elapsed, cpu

    try:
        return asyncio.run(run())
    finally:
        server.terminate()
        server.join(timeout=10)
        sock.close()


async def _feed_until_stored(ws, frames: list[str]) -> None:
    """Send ``frames``, then a ping; return at its pong, which leaves only once every frame before it is stored
    (docs/decisions/0419). Any other answer (an error frame) ends the run. Nothing polls the database meanwhile:
    a count(*) of the growing table every 20 ms took PostgreSQL CPU from the ingest being measured."""
    for frame in frames:
        await ws.send(frame)
    await ws.send(json.dumps({"op": "ping", "req_id": "bench-end"}))
    reply = await ws.recv()
    if json.loads(reply).get("op") != "pong":
        raise RuntimeError(f"the endpoint answered {reply}")


def bench_ingest(total: int, connections: int, batch: int, symbols: int) -> dict:
    """Executions through ``ws/gateway/`` served by uvicorn in a child process (its CPU measured apart)."""
    # Django's models load only after setup_postgres (main), so they are imported here.
    from django.db import connection

    from orders.models import Execution, Order

    _empty()
    per_conn = total // connections
    rng = random.Random(1)
    orders = []

    def messages(conn: int) -> list[str]:
        # One order of ours per message (its fills reference it), as the pipeline would have placed it.
        out = []
        for start in range(0, per_conn, batch):
            items = []
            link = f"bench-{conn}-{start}"
            for k in range(start, min(start + batch, per_conn)):
                n = conn * per_conn + k
                qty = Decimal(rng.randint(1, 100)) / 1000
                price = Decimal(60000 + rng.randint(-1000, 1000))
                items.append({
                    "category": "linear", "symbol": f"S{conn % symbols:03d}USDT", "execId": str(uuid.uuid4()),
                    "orderId": "", "side": rng.choice(("Buy", "Sell")), "execType": "Trade",
                    "execQty": str(qty), "execPrice": str(price), "execValue": str(qty * price),
                    "execFee": str((qty * price * Decimal("0.00055")).quantize(Decimal("1e-8"))),
                    "feeCurrency": "USDT", "isMaker": False, "execTime": str(BASE_MS + n), "seq": n,
                    "orderLinkId": link,
                })  # fmt: skip
            orders.append(Order(order_link_id=link, symbol=items[0]["symbol"], side="Buy", order_type="Market",
                                qty=sum(Decimal(i["execQty"]) for i in items), status="new"))  # fmt: skip
            out.append(json.dumps({"id": str(uuid.uuid4()), "topic": "execution", "creationTime": BASE_MS,
                                   "data": items}))  # fmt: skip
        return out

    prepared = [messages(c) for c in range(connections)]
    Order.objects.bulk_create(orders, batch_size=2000)
    sent = sum(len(frames) for frames in prepared)
    connection.close()  # the child must not share the parent's database connection

    async def clients(sockets: list) -> None:
        await asyncio.gather(*(_feed_until_stored(ws, f) for ws, f in zip(sockets, prepared, strict=True)))

    elapsed, cpu = _served(clients, len(prepared))
    count = Execution.objects.count()
    assert count == connections * per_conn, count
    with connection.cursor() as cursor:  # the transactions that stored them (PostgreSQL's xmin): the group sizes
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM orders_execution")
        transactions = cursor.fetchone()[0]
    return {
        "executions": count,
        "messages": sent,
        "connections": connections,
        "fills_per_message": batch,
        "symbols": symbols,
        "seconds": round(elapsed, 2),
        "messages_per_second": round(sent / elapsed),
        "executions_per_second": round(count / elapsed),
        "server_cpu_ms_per_message": round(1000 * cpu / sent, 3),
        "messages_per_transaction": round(sent / transactions, 1),
    }


def _market_frames(conn: int, count: int, symbol: str, rng: random.Random) -> tuple[list, list[str]]:
    """``count`` market orders of ours on ``symbol``, each filled at once, and the frames the simulator pushes
    for each (``exchange.simulator.engine._emit_changes``): an ``order`` message (the order Filled), the
    ``execution`` message (its one fill), a ``position`` message (the position after it), in the simulator's
    wire shape (``exchange.simulator.wire``, ``ws=True``)."""
    from exchange.simulator.engine import SimExecution, SimOrder, SimPosition
    from exchange.simulator.instruments import LINEAR
    from exchange.simulator.wire import execution_api, order_api, position_api
    from orders.models import Order

    spec = LINEAR["BTCUSDT"]  # the wire's scales; the symbol's name is the bench's own
    rows, frames = [], []
    position = SimPosition(symbol=symbol, position_idx=0, leverage=Decimal(10), created_ms=BASE_MS, updated_ms=BASE_MS)
    for k in range(count):
        n, ms = conn * count + k, BASE_MS + conn * count + k
        link, order_id = f"bench-{conn}-{k}", str(uuid.uuid4())
        side = rng.choice(("Buy", "Sell"))
        qty = Decimal(rng.randint(1, 100)) / 1000
        price = Decimal(60000 + rng.randint(-1000, 1000))
        fee = (qty * price * Decimal("0.00055")).quantize(Decimal("1e-8"))
        rows.append(Order(order_link_id=link, symbol=symbol, side=side, order_type="Market", qty=qty, status="new"))
        order = SimOrder(
            n=n, category="linear", symbol=symbol, order_id=order_id, order_link_id=link, side=side,
            order_type="Market", price=price, qty=qty, time_in_force="IOC", position_idx=0, reduce_only=False,
            close_on_trigger=False, created_ms=ms, updated_ms=ms, last_price_on_created=price, status="Filled",
            cum_exec_qty=qty, cum_exec_value=qty * price, cum_exec_fee=fee,
        )  # fmt: skip
        execution = SimExecution(
            n=n, category="linear", symbol=symbol, exec_id=str(uuid.uuid4()), order_id=order_id, order_link_id=link,
            side=side, order_type="Market", order_price=price, order_qty=qty, leaves_qty=Decimal(0),
            exec_type="Trade", exec_qty=qty, exec_price=price, exec_value=qty * price, exec_fee=fee,
            fee_rate=Decimal("0.00055"), is_maker=False, closed_size=Decimal(0), exec_pnl=Decimal(0),
            mark_price=price, exec_time=ms, seq=n, position_idx=0,
        )  # fmt: skip
        signed = (position.size if position.side != "Sell" else -position.size) + (qty if side == "Buy" else -qty)
        position.size, position.side = abs(signed), ("Buy" if signed > 0 else "Sell" if signed < 0 else "")
        position.avg_price, position.updated_ms, position.seq = price, ms, n
        for topic, item in (
            ("order", order_api(order, spec, ws=True)),
            ("execution", execution_api(execution, spec, ws=True)),
            ("position", position_api(position, spec, price, ws=True)),
        ):
            frames.append(json.dumps({"id": str(uuid.uuid4()), "topic": topic, "creationTime": ms, "data": [item]}))
    return rows, frames


def bench_market(total: int, connections: int, symbols: int) -> dict:
    """``total`` market orders (``--shape market``): per fill the three messages the simulator sends, on
    ``connections`` connections; the clock stops when every connection has had the pong of a ping sent after
    its last frame (a pong leaves only once everything before it is stored, docs/decisions/0419)."""
    from django.db import connection
    from django.db.models import F

    from orders.models import Execution, Order, OrderStatus

    _empty()
    per_conn = total // connections
    rng = random.Random(1)
    prepared, orders = [], []
    for conn in range(connections):
        rows, frames = _market_frames(conn, per_conn, f"S{conn % symbols:03d}USDT", rng)
        orders += rows
        prepared.append(frames)
    Order.objects.bulk_create(orders, batch_size=2000)
    sent = sum(len(frames) for frames in prepared)
    commits0 = _commits()
    connection.close()  # the child must not share the parent's database connection

    async def clients(sockets: list) -> None:
        await asyncio.gather(*(_feed_until_stored(ws, f) for ws, f in zip(sockets, prepared, strict=True)))

    elapsed, cpu = _served(clients, len(prepared))
    fills = connections * per_conn
    count = Execution.objects.count()
    assert count == fills, count
    filled = Order.objects.filter(status=OrderStatus.FILLED, filled_qty=F("qty")).count()
    assert filled == fills, filled
    transactions = _commits() - commits0
    return {
        "shape": "market",
        "fills": fills,
        "messages": sent,
        "connections": connections,
        "symbols": symbols,
        "seconds": round(elapsed, 2),
        "fills_per_second": round(fills / elapsed),
        "messages_per_second": round(sent / elapsed),
        "server_cpu_ms_per_message": round(1000 * cpu / sent, 3),
        "server_cpu_ms_per_fill": round(1000 * cpu / fills, 3),
        "transactions": transactions,
    }


def bench_market_single(total: int) -> dict:
    """The market shape's messages applied in this process one by one, each in its own transaction
    (``private_message_apply``), as at light load when no frame waits for another: CPU and wall per fill."""
    from exchange.bybit.events import parse_private_message
    from orders.models import Order
    from orders.services.fills import private_message_apply

    _empty()
    rows, frames = _market_frames(0, total, "S000USDT", random.Random(1))
    Order.objects.bulk_create(rows, batch_size=2000)
    messages = [parse_private_message(json.loads(frame, parse_float=Decimal)) for frame in frames]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for message in messages:
        private_message_apply(message=message)
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    return {
        "shape": "market, single frames in-process",
        "fills": total,
        "messages": len(messages),
        "cpu_ms_per_fill": round(1000 * cpu / total, 3),
        "cpu_ms_per_message": round(1000 * cpu / len(messages), 3),
        "wall_ms_per_fill": round(1000 * elapsed / total, 3),
    }


def _commits() -> int:
    """Transactions committed in this database so far (pg_stat_database; counted when a backend reports)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def market_lines(result: dict, floor: Floor) -> list[str]:
    return [
        f"ingest, market orders (order + execution + position messages per fill) over {result['connections']} "
        f"connections: {result['fills_per_second']:,} fills/s, {result['messages_per_second']:,} messages/s, "
        f"server CPU {result['server_cpu_ms_per_message']:.3f} ms per message, "
        f"{result['server_cpu_ms_per_fill']:.3f} ms per fill, {result['transactions']:,} transactions; "
        f"{floor.ratio(result['messages_per_second'])} (messages/s)",
        floor.line(),
    ]


def ingest_lines(result: dict, floor: Floor) -> list[str]:
    """The ingest figure beside the commit floor of the same run, for a person to read."""
    return [
        f"ingest, {result['fills_per_message']} per message over {result['connections']} connections: "
        f"{result['messages_per_second']:,} messages/s, {result['executions_per_second']:,} executions/s, "
        f"server CPU {result['server_cpu_ms_per_message']:.3f} ms per message, "
        f"{result['messages_per_transaction']} messages per transaction; "
        f"{floor.ratio(result['messages_per_second'])} (messages/s)",
        floor.line(),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--validation", type=int, default=1_000_000)
    parser.add_argument("--positions", type=int, default=100)
    parser.add_argument("--ingest", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument(
        "--shape",
        choices=["execution", "market", "market-single"],
        default="execution",
        help="execution: messages of --batch fills; market: per fill the order, execution and position messages; "
        "market-single: those messages applied one by one in this process (no endpoint), CPU per fill",
    )
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-validation", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup_postgres(args.db, WS_GATEWAY_API_KEY=GATEWAY_KEY)
    if not args.skip_ingest and args.shape == "market-single":
        result = bench_market_single(args.ingest)
        print(json.dumps({"ingest": result, "load_average_1m": round(os.getloadavg()[0], 1)}))
        print(
            f"ingest, market orders as single frames in-process: CPU {result['cpu_ms_per_fill']:.3f} ms per fill "
            f"({result['cpu_ms_per_message']:.3f} per message), wall {result['wall_ms_per_fill']:.3f} ms per fill"
        )
    elif not args.skip_ingest and args.shape == "market":
        floor = commit_floor(args.db)
        result = bench_market(args.ingest, args.connections, args.symbols)
        print(json.dumps({"ingest": result, "commit_floor_per_s": round(floor.per_s)}))
        print("\n".join(market_lines(result, floor)))
    elif not args.skip_ingest:
        for batch in args.batch:
            floor = commit_floor(args.db)
            result = bench_ingest(args.ingest, args.connections, batch, args.symbols)
            print(json.dumps({"ingest": result, "commit_floor_per_s": round(floor.per_s)}))
            print("\n".join(ingest_lines(result, floor)))
    if not args.skip_validation:
        print(json.dumps({"validation": bench_validation(args.validation, args.positions, args.seed)}))


if __name__ == "__main__":
    main()
