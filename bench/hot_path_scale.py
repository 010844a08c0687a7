"""The signal and fill paths' statements on a desk's history: does any of them grow with the tables?

    export BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/om_bench_scale
    .venv/bin/python bench/admin_scale.py --seed-only     # once: about 3 minutes on 2 cores
    .venv/bin/python bench/hot_path_scale.py

Runs on the database that ``bench/admin_scale.py`` seeds (by default 1,000,000 orders, signals and links and
5,000,000 fills over a year, the newest orders still open, 50 signals waiting). The steps are the work of one
signal and of its order's fill frames, called through the functions the consumer and the fill ingest call.
Each step runs in a transaction that is rolled back, so the seed stays as it was.

Each step is timed after a warm-up (median of ``--repeat``), with the number of statements. The statements of
each step are then run again under ``EXPLAIN (ANALYZE)`` with their values bound server side, once planned for
those values and once as a generic plan (what a prepared statement of the hot path may run), each pass rolled
back. Any statement slower than ``--slow-ms`` in either pass is printed with its plan's scans. The same steps
on an empty database are what ``bench/signals.py`` measures; a step that costs much more here grows with the
history (docs/decisions/0338).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import setup_postgres  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/om_bench_scale"
SYMBOL = "BTCUSDT"


class _Rollback(Exception):
    pass


def _rolled_back(step):
    """Run ``step`` in a transaction and roll it back; its result."""
    from django.db import transaction

    result = []
    try:
        with transaction.atomic():
            result.append(step())
            raise _Rollback
    except _Rollback:
        pass
    return result[0]


def _signal_payload() -> bytes:
    return json.dumps({
        "signal_id": str(uuid.uuid4()), "signal_type": "buy", "asset": SYMBOL, "amount": "100", "confidence": 0.9,
        "timestamp": datetime.now(UTC).isoformat(), "strategy_id": "hot-path-scale",
        "market_data_snapshot": {"price": "60000", "spread": "1"},
    }).encode()  # fmt: skip


def _fill_frames_step():
    """A market order of ours, stored as the executor leaves it, and the three frames of its fill applied as the
    ingest applies them (``bench/fills.py``'s market shape)."""
    import random

    from bench.fills import _market_frames
    from exchange.bybit.events import parse_private_message
    from orders.services.fills.dispatch import private_messages_apply

    rows, frames = _market_frames(0, 1, SYMBOL, random.Random())
    rows[0].order_link_id = f"hp-{uuid.uuid4().hex[:20]}"

    def step():
        # Now, not the fill bench's fixed past: a fill older than the ledger's newest entries is replayed into
        # it (a late fill), which is another path than the one measured here.
        now_ms = str(int(time.time() * 1000))
        messages = []
        for frame in frames:
            data = json.loads(frame)
            data["creationTime"] = int(now_ms)
            for item in data["data"]:
                item.update({key: now_ms for key in ("execTime", "updatedTime", "createdTime") if key in item})
                if "orderLinkId" in item:
                    item["orderLinkId"] = rows[0].order_link_id
            messages.append(parse_private_message(data))
        rows[0].pk = None
        rows[0].save()
        return private_messages_apply(messages=messages, source="ws")

    return step


def steps() -> list[tuple[str, object]]:
    from orders.services.fresh_position import book_doubts
    from orders.services.risk import book_state_read
    from signals_app.services.intake import signals_intake_batch
    from signals_app.services.signal_processor import _next_signals, symbols_with_work

    return [
        ("intake: one message stored", lambda: signals_intake_batch(payloads=[_signal_payload()], source="amqp")),
        ("processor: symbols with work", lambda: symbols_with_work()),
        ("processor: the symbol's next signals", lambda: _next_signals(SYMBOL, 20)),
        ("plan: the book read (limits, positions, exposure)", lambda: book_state_read(symbol=SYMBOL)),
        ("plan: is the book current (freshness)", lambda: book_doubts(category="linear", symbol=SYMBOL)),
        ("fill ingest: order, execution and position frames", _fill_frames_step()),
    ]


def _time(step, repeat: int) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        _rolled_back(step)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        _rolled_back(step)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        _rolled_back(step)
    return statistics.median(times), len(_statements(captured))


def _statements(captured) -> list[str]:
    """The statements proper (not the transaction's and savepoints' own)."""
    return [
        q["sql"]
        for q in captured.captured_queries
        if q["sql"].lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "INSERT", "DELETE"))
    ]


def _explained(step, slow_ms: float) -> tuple[list[tuple[float, str, list[str]]], int]:
    """The statements of ``step`` again, in order, under EXPLAIN ANALYZE with their values bound server side as
    the prepared statements of the hot path bind them; once planned for the values (custom) and once generic
    (what a prepared statement runs after its first executions), each pass rolled back. Returns (ms, statement,
    the plan's scans) of those slower than ``slow_ms`` in either pass, and how many could not be explained."""
    import psycopg
    from django.db import connection

    recorded: list[tuple[str, object]] = []

    def record(execute, sql, params, many, context):
        recorded.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        _rolled_back(step)
    statements = [
        (sql, params)
        for sql, params in recorded
        if sql.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "INSERT", "DELETE"))
    ]
    slowest: dict[int, tuple[float, list[str]]] = {}
    failed: set[int] = set()

    def explain(mode: str):
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(f"SET LOCAL plan_cache_mode = {mode}")
            for index, (sql, params) in enumerate(statements):
                cursor.execute("SAVEPOINT hp")
                try:
                    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
                    plan = cursor.fetchone()[0][0]
                except psycopg.Error:
                    cursor.execute("ROLLBACK TO SAVEPOINT hp")
                    failed.add(index)
                    continue
                cursor.execute("RELEASE SAVEPOINT hp")  # kept: a later statement may read what this one wrote
                if plan["Execution Time"] > slowest.get(index, (-1.0,))[0]:
                    slowest[index] = (plan["Execution Time"], _scans(plan["Plan"]))

    for mode in ("force_custom_plan", "force_generic_plan"):
        _rolled_back(lambda mode=mode: explain(mode))
    found = [
        (ms, " ".join(statements[i][0].split())[:160], scans)
        for i, (ms, scans) in sorted(slowest.items())
        if ms >= slow_ms
    ]
    return found, len(failed - set(slowest))


def _scans(node: dict, out: list[str] | None = None) -> list[str]:
    out = [] if out is None else out
    if "Scan" in node["Node Type"]:
        what = node.get("Index Name") or node.get("Relation Name", "")
        out.append(f"{node['Node Type']} {what}: {node.get('Actual Rows', 0)} rows x {node.get('Actual Loops', 1)}, "
                   f"{node.get('Actual Total Time', 0):.2f} ms")  # fmt: skip
    for child in node.get("Plans", []):
        _scans(child, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--slow-ms", type=float, default=0.5, help="print the plans of statements this slow")
    args = parser.parse_args()
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    setup_postgres(db_url, ENABLE_DRY_RUN="false")
    from django.db import connection

    from orders.models import Execution, Order
    from signals_app.models import TradingSignal

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [Order._meta.db_table])
        orders = cursor.fetchone()[0]
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [Execution._meta.db_table])
        executions = cursor.fetchone()[0]
    if orders < 10_000:
        print(
            f"only {orders:,} orders here: the figures below are the small-table reference; for the history, "
            "seed with bench/admin_scale.py --seed-only (same BENCH_DATABASE_URL)"
        )
    waiting = TradingSignal.objects.filter(status="received").count()
    print(f"hot path on a history of about {orders:,} orders and {executions:,} fills ({waiting} signals waiting); "
          f"symbol {SYMBOL}; median of {args.repeat}, each step rolled back")  # fmt: skip
    for label, step in steps():
        ms, count = _time(step, args.repeat)
        print(f"  {label:<52} {ms:7.2f} ms  {count:2d} statements")
        found, unexplained = _explained(step, args.slow_ms)
        if unexplained:
            print(f"      ({unexplained} statement(s) could not be run again under EXPLAIN)")
        for slow, sql, scans in found:
            print(f"      slow statement {slow:.2f} ms: {sql}")
            for scan in scans:
                print(f"        {scan}")


if __name__ == "__main__":
    main()
