"""Back office at scale: every admin changelist and the main API lists on 1,000,000 orders and 5,000,000 fills.

    .venv/bin/python bench/admin_scale.py                  # seed once (about 2-3 min on 2 cores), then time
    .venv/bin/python bench/admin_scale.py --reseed         # seed again (e.g. on another day: "today" filters)
    .venv/bin/python bench/admin_scale.py --only order --explain   # pages whose label contains "order", with plans
    .venv/bin/python bench/admin_scale.py --orders 100000 --executions 500000   # a quick, smaller run

Uses its own PostgreSQL database: BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/om_bench_scale (created and migrated here).

Seeding is SQL only (INSERT ... SELECT FROM generate_series), not the ORM: secondary indexes
are dropped for the load and rebuilt after it, foreign-key triggers are off for the load
(session_replication_role = replica), then VACUUM ANALYZE. What is seeded, over one year
ending at seed time: --orders orders over 20 symbols and 10 strategies (plus one rare
strategy), one signal and one signal link per order, --executions fills (about 1 in 1000 a
Funding row without an order), 20 positions, --snapshots snapshots, the position ledger
of the last 7 days (what today's PnL and the PnL report read), --exchange-calls audit rows,
10,000 reconciliation runs with 30,000 discrepancies, a few limits and audit rows. Rare and
absent filter values (dry-run orders, a strategy with 100 orders, an exec type never used)
are there on purpose: they are the filters that walk a whole index when nothing backs them.

Timing: Django's test client, logged in as a Risk staff user (not a superuser), in this
process; each page once to warm up, then --repeat times; the median, the number of queries,
and the slowest query of the page. The seed parameters are kept in bench_scale_meta, so a
second run only times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import setup_postgres  # noqa: E402
from bench.floor import commit_floor  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/om_bench_scale"

SYMBOLS = [
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT", "AVAXUSDT", "LINKUSDT", "DOTUSDT", "LTCUSDT",
    "BCHUSDT", "NEARUSDT", "APTUSDT", "ARBUSDT", "OPUSDT", "SUIUSDT", "TONUSDT", "TRXUSDT", "ATOMUSDT", "FILUSDT",
]  # fmt: skip
SPAN = timedelta(days=365)
LEDGER_DAYS = 7
ACTIVE_TAIL = 400  # the newest orders are the open ones


# --------------------------------------------------------------------------- seeding


def _columns(model, given: dict[str, str]) -> tuple[list[str], list[str], list]:
    """Every concrete column of ``model``: the SQL expression given, else the field's default as a
    parameter, else now() for auto timestamps, else NULL. Fields added later by other apps
    therefore do not break the bench; a required field without a default does, loudly."""
    from django.db import connection
    from django.db.models import DateTimeField

    columns, expressions, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.generated:  # computed by the database from the row (Order.may_be_unsettled)
            continue
        columns.append(f'"{field.column}"')
        if field.column in given:
            expressions.append(given[field.column])
        elif field.has_default():
            expressions.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection))
        elif isinstance(field, DateTimeField) and (field.auto_now or field.auto_now_add):
            expressions.append("now()")
        elif field.null:
            expressions.append("NULL")
        elif field.get_internal_type() in ("CharField", "TextField") and field.blank:
            expressions.append("''")
        else:
            raise SystemExit(f"bench: no value for required column {model._meta.db_table}.{field.column}")
    unknown = set(given) - {f.column for f in model._meta.concrete_fields if not f.generated}
    if unknown:
        raise SystemExit(f"bench: {model._meta.db_table} has no column(s) {sorted(unknown)}")
    return columns, expressions, params


def _insert(cursor, model, count: int, given: dict[str, str], *, chunk: int = 1_000_000) -> float:
    """INSERT ... SELECT over generate_series(1, count) (``g``), in chunks; returns seconds."""
    # The given expressions use % as modulo: escaped, since the defaults travel as parameters.
    columns, expressions, params = _columns(model, {k: v.replace("%", "%%") for k, v in given.items()})
    sql = (
        f'INSERT INTO "{model._meta.db_table}" ({", ".join(columns)}) '
        f"SELECT {', '.join(expressions)} FROM generate_series(%s::bigint, %s::bigint) AS g"
    )
    started = time.perf_counter()
    for low in range(1, count + 1, chunk):
        cursor.execute(sql, [*params, low, min(count, low + chunk - 1)])
    return time.perf_counter() - started


def _secondary_indexes(cursor, table: str) -> list[tuple[str, str]]:
    """Indexes that do not back a constraint (primary key, unique): dropped for the load, rebuilt after."""
    cursor.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' AND i.tablename = %s "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
        [table],
    )
    return cursor.fetchall()


def seed(*, orders: int, executions: int, snapshots: int, exchange_calls: int) -> datetime:
    from django.apps import apps
    from django.db import connection, transaction

    from exchange.models import ExchangeCall
    from ordermanager.core.models import AuditEntry
    from orders.models import Discrepancy, Execution, Order, ReconciliationRun, RiskLimit, SignalOrderRelationship
    from positions.models import Position, PositionLedgerEntry, PositionSnapshot
    from signals_app.models import TradingSignal

    now = datetime.now(UTC).replace(microsecond=0)
    tables = [m._meta.db_table for m in (
        Discrepancy, ReconciliationRun, PositionLedgerEntry, PositionSnapshot, Position, Execution,
        SignalOrderRelationship, Order, TradingSignal, ExchangeCall, AuditEntry, RiskLimit,
    )]  # fmt: skip
    symbols = "ARRAY[" + ",".join(f"'{s}'" for s in SYMBOLS) + "]"
    n_sym = len(SYMBOLS)
    step = SPAN.total_seconds() / orders  # seconds between two orders
    t0 = time.perf_counter()

    def at(j: str) -> str:
        """Creation time of order ``j`` (shared by orders, signals, links and fills)."""
        return f"('{now.isoformat()}'::timestamptz - make_interval(secs => ({orders} - {j}) * {step}))"

    status = (
        f"CASE WHEN g % 1000 = 999 THEN 'dry_run' "
        f"WHEN g > {orders - ACTIVE_TAIL} THEN (ARRAY['new','new','partially_filled','pending_cancel',"
        f"'pending_submit'])[1 + g % 5] "
        f"WHEN g % 100 < 62 THEN 'filled' WHEN g % 100 < 92 THEN 'cancelled' "
        f"WHEN g % 100 < 98 THEN 'rejected' ELSE 'failed' END"
    )
    price = "(100 + (g % 1000))::numeric"
    qty = "(0.001 * (1 + g % 500))::numeric"
    filled = f"CASE ({status}) WHEN 'filled' THEN {qty} WHEN 'partially_filled' THEN {qty} / 2 ELSE 0 END"
    strategy = "CASE WHEN g % 10007 = 0 THEN 'rare-strategy' ELSE 'strat-' || lpad((g % 10)::text, 2, '0') END"
    timings = {}
    # One transaction: truncate, drop the secondary indexes, load, rebuild them. A failure anywhere
    # rolls all of it back (DDL is transactional in PostgreSQL), so the indexes are never lost.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        dropped = {t: _secondary_indexes(cursor, t) for t in tables}
        for indexes in dropped.values():
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL session_replication_role = replica")  # no FK triggers during the load
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET LOCAL max_parallel_maintenance_workers = 2")
        timings["orders"] = _insert(cursor, Order, orders, {
            "id": "g", "order_link_id": "'ol-' || g", "order_id": "md5('o' || g)::uuid::text",
            "category": "'linear'", "symbol": f"({symbols})[1 + g % {n_sym}]",
            "side": "CASE WHEN g % 2 = 0 THEN 'Buy' ELSE 'Sell' END",
            "order_type": "CASE WHEN g % 3 = 0 THEN 'Market' ELSE 'Limit' END",
            "time_in_force": "CASE WHEN g % 3 = 0 THEN 'IOC' ELSE 'GTC' END",
            "qty": qty, "price": f"CASE WHEN g % 3 = 0 THEN NULL ELSE {price} END",
            "status": status,
            "filled_qty": filled,
            "booked_qty": filled,  # what the fill path keeps (0336): every fill of the history is booked
            "avg_fill_price": f"CASE WHEN ({status}) IN ('filled', 'partially_filled') THEN {price} END",
            "cum_exec_value": f"CASE ({status}) WHEN 'filled' THEN {qty} * {price} ELSE 0 END",
            "fees": f"CASE ({status}) WHEN 'filled' THEN round({qty} * {price} * 0.00055, 8) ELSE 0 END",
            "cancel_reason": f"CASE ({status}) WHEN 'cancelled' THEN 'stale' ELSE '' END",
            "reject_reason": f"CASE ({status}) WHEN 'rejected' THEN 'risk: max position' ELSE '' END",
            "is_dry_run": "g % 1000 = 999", "is_external": "g % 5000 = 17", "strategy_id": strategy,
            "trace_id": "md5('t' || g)", "submitted_at": at("g"), "created_at": at("g"), "updated_at": at("g"),
        })  # fmt: skip
        signal_status = (
            f"CASE WHEN g > {orders - 50} THEN 'received' WHEN g % 1000 = 999 THEN 'dry_run' "
            "WHEN g % 100 < 92 THEN 'executed' WHEN g % 100 < 98 THEN 'rejected' ELSE 'failed' END"
        )
        timings["signals"] = _insert(cursor, TradingSignal, orders, {
            "id": "g", "signal_id": "md5('s' || g)::uuid",
            "signal_type": "CASE WHEN g % 2 = 0 THEN 'buy' ELSE 'sell' END",
            "asset": f"({symbols})[1 + g % {n_sym}]", "amount": "(100 + g % 900)::numeric",
            "confidence": "(0.5 + (g % 50) / 100.0)::numeric", "strategy_id": strategy, "model_version": "'v1'",
            "is_warmup": "g % 2000 = 0", "signal_timestamp": at("g"), "snapshot_price": price,
            "raw_payload": "jsonb_build_object('signal_id', md5('s' || g)::uuid, 'asset', "
                           f"({symbols})[1 + g % {n_sym}], 'amount', (100 + g % 900)::text, 'strategy_id', {strategy})",
            "trace_id": "md5('t' || g)", "source": "CASE WHEN g % 50 = 0 THEN 'api' ELSE 'amqp' END",
            "status": signal_status,
            "reason": f"CASE ({signal_status}) WHEN 'rejected' THEN 'risk: max position' ELSE '' END",
            "received_at": at("g"), "processed_at": at("g"),
        })  # fmt: skip
        timings["signal links"] = _insert(cursor, SignalOrderRelationship, orders, {
            "id": "g", "signal_id": "g", "order_id": "g", "allocation_amount": "(100 + g % 900)::numeric",
            "created_at": at("g"),
        })  # fmt: skip
        j = f"(1 + (g - 1) * {orders} / {executions})"  # the order of fill g (about executions/orders each)
        funding = "g % 997 = 0"
        exec_type = f"CASE WHEN {funding} THEN 'Funding' WHEN g % 100003 = 0 THEN 'AdlTrade' ELSE 'Trade' END"
        timings["executions"] = _insert(cursor, Execution, executions, {
            "id": "g", "exec_id": "md5('e' || g)::uuid::text",
            "order_id": f"CASE WHEN {funding} THEN NULL ELSE {j} END",
            "exchange_order_id": f"CASE WHEN {funding} THEN '' ELSE md5('o' || {j})::uuid::text END",
            "order_link_id": f"CASE WHEN {funding} THEN '' ELSE 'ol-' || {j} END",
            "category": "'linear'", "symbol": f"({symbols})[1 + {j} % {n_sym}]",
            "side": f"CASE WHEN {j} % 2 = 0 THEN 'Buy' ELSE 'Sell' END", "exec_type": exec_type,
            "exec_qty": "(0.001 * (1 + g % 100))::numeric", "exec_price": "(100 + (g % 1000))::numeric",
            "exec_value": "(0.001 * (1 + g % 100) * (100 + (g % 1000)))::numeric",
            "exec_fee": "round((0.001 * (1 + g % 100) * (100 + (g % 1000)) * 0.00055)::numeric, 8)",
            "fee_currency": "'USDT'", "is_maker": "g % 3 = 0",
            "exec_time": f"({at(j)} + make_interval(secs => g % 5))", "seq": "g",
            "source": "CASE WHEN g % 20 = 0 THEN 'rest' ELSE 'ws' END", "created_at": at(j),
        })  # fmt: skip
        timings["positions"] = _insert(cursor, Position, n_sym, {
            "id": "g", "category": "'linear'", "symbol": f"({symbols})[g]", "size": "((g % 7) - 3)::numeric",
            "avg_entry_price": "(100 + g)::numeric", "mark_price": "(101 + g)::numeric",
            "unrealized_pnl": "(((g % 7) - 3) * 1)::numeric", "realized_pnl": "(g * 10)::numeric",
            "last_exec_time": f"'{now.isoformat()}'::timestamptz",
            "last_exec_ms": f"{int(now.timestamp() * 1000)}",
        })  # fmt: skip
        snap_step = SPAN.total_seconds() / max(snapshots, 1) * n_sym
        timings["snapshots"] = _insert(cursor, PositionSnapshot, snapshots, {
            "id": "g", "position_id": f"1 + g % {n_sym}", "size": "((g % 7) - 3)::numeric",
            "avg_entry_price": "(100 + g % 50)::numeric", "mark_price": "(101 + g % 50)::numeric",
            "realized_pnl": f"(g / {n_sym} * 0.01)::numeric", "unrealized_pnl": "((g % 200) - 100)::numeric",
            "taken_at": f"('{now.isoformat()}'::timestamptz - make_interval(secs => ({snapshots} - g) / {n_sym} "
                        f"* {snap_step}))",
        })  # fmt: skip
        # The ledger of the last LEDGER_DAYS: the executions of that window, in order, per symbol.
        first = max(1, executions - int(executions * LEDGER_DAYS * 86400 / SPAN.total_seconds()))
        count = executions - first + 1
        k = f"({first} - 1 + g)"
        kj = f"(1 + ({k} - 1) * {orders} / {executions})"
        timings["ledger"] = _insert(cursor, PositionLedgerEntry, count, {
            "id": "g", "position_id": f"1 + {kj} % {n_sym}", "exec_id": f"md5('e' || {k})::uuid::text",
            "exec_type": f"CASE WHEN {k} % 997 = 0 THEN 'Funding' ELSE 'Trade' END",
            "exec_time_ms": f"(extract(epoch FROM {at(kj)}) * 1000)::bigint + ({k} % 5) * 1000", "seq": k,
            "side": f"CASE WHEN {kj} % 2 = 0 THEN 'Buy' ELSE 'Sell' END",
            "qty": f"(0.001 * (1 + {k} % 100))::numeric", "price": f"(100 + ({k} % 1000))::numeric",
            "fee": "0.01", "size_after": "1", "avg_entry_after": "100", "realized_after": "(g * 0.01)::numeric",
            "fees_after": "(g * 0.001)::numeric", "funding_after": "0",
        })  # fmt: skip
        call_step = timedelta(days=30).total_seconds() / max(exchange_calls, 1)
        timings["exchange calls"] = _insert(cursor, ExchangeCall, exchange_calls, {
            "id": "g", "created_at": f"('{now.isoformat()}'::timestamptz - make_interval(secs => ({exchange_calls} - g)"
                                     f" * {call_step}))",
            "method": "CASE WHEN g % 4 = 0 THEN 'POST' ELSE 'GET' END",
            "path": "CASE WHEN g % 4 = 0 THEN '/v5/order/create' ELSE '/v5/order/realtime' END",
            "params": "jsonb_build_object('category', 'linear')",
            "http_status": "CASE WHEN g % 2000 = 0 THEN NULL ELSE 200 END",
            "ret_code": "CASE WHEN g % 2000 = 0 THEN NULL WHEN g % 500 = 0 THEN 10006 ELSE 0 END",
            "error": "CASE WHEN g % 2000 = 0 THEN 'timeout' ELSE '' END", "latency_ms": "20 + g % 80",
            "order_link_id": f"CASE WHEN g % 4 = 0 THEN 'ol-' || (1 + g % {orders}) ELSE '' END",
            "trace_id": "md5('t' || g)",
        })  # fmt: skip
        runs = 10_000
        run_step = SPAN.total_seconds() / runs
        run_at = f"('{now.isoformat()}'::timestamptz - make_interval(secs => ({runs} - g) * {run_step}))"
        timings["reconciliation"] = _insert(cursor, ReconciliationRun, runs, {
            "id": "g", "trigger": "CASE WHEN g % 10 = 0 THEN 'admin' ELSE 'schedule' END",
            "status": "CASE WHEN g % 50 = 0 THEN 'unresolved' WHEN g % 97 = 0 THEN 'failed' ELSE 'succeeded' END",
            "started_at": run_at, "finished_at": run_at, "checked": "g % 400",
        })  # fmt: skip
        timings["reconciliation"] += _insert(cursor, Discrepancy, 3 * runs, {
            "id": "g", "run_id": "1 + (g - 1) / 3", "kind": "CASE WHEN g % 3 = 0 THEN 'order_status' "
                                                         "ELSE 'executions_backfilled' END",
            "symbol": f"({symbols})[1 + g % {n_sym}]", "order_link_id": f"'ol-' || (1 + g % {orders})",
            "resolved": "g % 50 <> 0",
        })  # fmt: skip
        _insert(cursor, RiskLimit, 4, {
            "id": "g", "symbol": "CASE WHEN g = 1 THEN '' ELSE (ARRAY['BTCUSDT','ETHUSDT','SOLUSDT'])[g - 1] END",
            "max_position_value": "50000", "max_exposure": "200000", "max_order_size_ratio": "0.5",
        })  # fmt: skip
        _insert(cursor, AuditEntry, 1000, {
            "id": "g", "action": "'risk_limit.update'", "target_type": "'orders.risklimit'", "target_id": "'1'",
            "changes": "jsonb_build_object('max_exposure', jsonb_build_object('before', '1', 'after', '2'))",
            "source": "'admin'", "created_at": f"('{now.isoformat()}'::timestamptz - make_interval(hours => g::int))",
        })  # fmt: skip
        for model in apps.get_models():
            table = model._meta.db_table
            if table in tables and model._meta.pk.get_internal_type() in ("AutoField", "BigAutoField"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"GREATEST((SELECT max(id) FROM \"{table}\"), 1))")  # fmt: skip
        t1 = time.perf_counter()
        for indexes in dropped.values():
            for _, definition in indexes:
                cursor.execute(definition)
        rebuild = time.perf_counter() - t1
    t2 = time.perf_counter()
    connection.ensure_connection()
    raw = connection.connection
    raw.autocommit, was = True, raw.autocommit
    with raw.cursor() as cursor:
        for table in tables:
            cursor.execute(f'VACUUM ANALYZE "{table}"')
    raw.autocommit = was
    vacuum = time.perf_counter() - t2
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    total = time.perf_counter() - t0
    print(f"seeded in {total:.0f} s: {parts}; indexes {rebuild:.0f} s; vacuum analyze {vacuum:.0f} s")
    return now


def _meta_get():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_scale_meta (params text PRIMARY KEY, seeded_at timestamptz)")
        cursor.execute("SELECT params, seeded_at FROM bench_scale_meta")
        row = cursor.fetchone()
    return row


def _meta_set(params: str, seeded_at: datetime) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM bench_scale_meta")
        cursor.execute("INSERT INTO bench_scale_meta VALUES (%s, %s)", [params, seeded_at])


# --------------------------------------------------------------------------- timing


def _risk_staff():
    from django.contrib.auth.models import Group, User

    from ordermanager.core.roles import RISK_STAFF

    user, _ = User.objects.get_or_create(username="bench-risk", defaults={"is_staff": True})
    user.groups.set([Group.objects.get(name=RISK_STAFF)])
    return user


def _day(field: str, day: datetime) -> dict:
    """What the admin's DateFieldListFilter puts in the URL for one day."""
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    return {f"{field}__gte": str(start), f"{field}__lt": str(start + timedelta(days=1))}


def pages(*, orders: int, executions: int, seeded_at: datetime) -> list[tuple[str, str]]:
    from orders.models import ReconciliationRun
    from positions.models import Position
    from signals_app.models import TradingSignal

    today = datetime.now(UTC)
    recent = orders - 10  # an order near the top
    old = orders // 3  # an order from months ago
    signal = TradingSignal.objects.filter(pk=old).values_list("signal_id", flat=True).first()
    position = Position.objects.order_by("id").values_list("id", flat=True).first()
    run = ReconciliationRun.objects.order_by("-id").values_list("id", flat=True).first()
    week_ago = (today - timedelta(days=7)).isoformat()
    month_ago = (today - timedelta(days=30)).isoformat()
    exec_old = executions // 3

    def q(path: str, **params) -> str:
        return f"{path}?{urlencode(params)}" if params else path

    a = "/admin"
    return [
        ("admin index", f"{a}/"),
        ("dashboard", f"{a}/dashboard/"),
        ("dashboard live fragment", f"{a}/dashboard/live/"),
        ("orders", f"{a}/orders/order/"),
        ("orders status=new", q(f"{a}/orders/order/", status__exact="new")),
        ("orders status=filled", q(f"{a}/orders/order/", status__exact="filled")),
        ("orders symbol=BTCUSDT", q(f"{a}/orders/order/", symbol="BTCUSDT")),
        ("orders cancelled ETHUSDT", q(f"{a}/orders/order/", status__exact="cancelled", symbol="ETHUSDT")),
        ("orders side=Sell type=Market", q(f"{a}/orders/order/", side__exact="Sell", order_type__exact="Market")),
        ("orders status=failed", q(f"{a}/orders/order/", status__exact="failed")),
        ("orders dry-run", q(f"{a}/orders/order/", is_dry_run__exact="1")),
        ("orders external", q(f"{a}/orders/order/", is_external__exact="1")),
        ("orders created today", q(f"{a}/orders/order/", **_day("created_at", today))),
        ("orders created today status=new", q(f"{a}/orders/order/", status__exact="new", **_day("created_at", today))),
        ("orders page 200", q(f"{a}/orders/order/", p="200")),
        ("orders search orderLinkId", q(f"{a}/orders/order/", q=f"ol-{old}")),
        ("orders search exchange id", q(f"{a}/orders/order/", q=_md5_uuid(f"o{old}"))),
        ("orders search signal id", q(f"{a}/orders/order/", q=str(signal))),
        ("orders search no match", q(f"{a}/orders/order/", q="nothing-like-this")),
        ("order detail (fills inline)", f"{a}/orders/order/{old}/change/"),
        ("executions", f"{a}/orders/execution/"),
        ("executions type=Funding", q(f"{a}/orders/execution/", exec_type="Funding")),
        ("executions type=Delivery (none)", q(f"{a}/orders/execution/", exec_type="Delivery")),
        ("executions source=rest maker", q(f"{a}/orders/execution/", source="rest", is_maker__exact="1")),
        ("executions today", q(f"{a}/orders/execution/", **_day("exec_time", today))),
        ("executions search execId", q(f"{a}/orders/execution/", q=_md5_uuid(f"e{exec_old}"))),
        ("executions search orderLinkId", q(f"{a}/orders/execution/", q=f"ol-{old}")),
        ("executions search no match", q(f"{a}/orders/execution/", q="nothing-like-this")),
        ("signal links", f"{a}/orders/signalorderrelationship/"),
        ("signal links search orderLinkId", q(f"{a}/orders/signalorderrelationship/", q=f"ol-{old}")),
        ("risk limits", f"{a}/orders/risklimit/"),
        ("reconciliation runs", f"{a}/orders/reconciliationrun/"),
        ("reconciliation runs unresolved", q(f"{a}/orders/reconciliationrun/", status__exact="unresolved")),
        ("reconciliation run detail", f"{a}/orders/reconciliationrun/{run}/change/"),
        ("discrepancies", f"{a}/orders/discrepancy/"),
        ("discrepancies unresolved", q(f"{a}/orders/discrepancy/", resolved__exact="0")),
        ("positions", f"{a}/positions/position/"),
        ("position detail (chart)", f"{a}/positions/position/{position}/change/"),
        ("snapshots", f"{a}/positions/positionsnapshot/"),
        ("snapshots search BTCUSDT", q(f"{a}/positions/positionsnapshot/", q="BTCUSDT")),
        ("snapshots today", q(f"{a}/positions/positionsnapshot/", **_day("taken_at", today))),
        ("ledger", f"{a}/positions/positionledgerentry/"),
        ("position discrepancies", f"{a}/positions/positiondiscrepancy/"),
        ("signals", f"{a}/signals_app/tradingsignal/"),
        ("signals status=rejected", q(f"{a}/signals_app/tradingsignal/", status__exact="rejected")),
        ("signals status=received", q(f"{a}/signals_app/tradingsignal/", status__exact="received")),
        ("signals status=processing (none)", q(f"{a}/signals_app/tradingsignal/", status__exact="processing")),
        ("signals source=cli (none)", q(f"{a}/signals_app/tradingsignal/", source="cli")),
        ("signals warm-up", q(f"{a}/signals_app/tradingsignal/", is_warmup__exact="1")),
        ("signals received today", q(f"{a}/signals_app/tradingsignal/", **_day("received_at", today))),
        ("signals search signal id", q(f"{a}/signals_app/tradingsignal/", q=str(signal))),
        ("signals search trace id", q(f"{a}/signals_app/tradingsignal/", q=_md5(f"t{old}"))),
        ("signal detail", f"{a}/signals_app/tradingsignal/{old}/change/"),
        ("exchange calls", f"{a}/exchange/exchangecall/"),
        ("exchange calls failed", q(f"{a}/exchange/exchangecall/", outcome="failed")),
        ("exchange calls POST today", q(f"{a}/exchange/exchangecall/", method="POST", **_day("created_at", today))),
        ("exchange calls search", q(f"{a}/exchange/exchangecall/", q=f"ol-{old}")),
        ("instruments", f"{a}/exchange/instrument/"),
        ("audit entries", f"{a}/core/auditentry/"),
        ("heartbeats", f"{a}/core/heartbeat/"),
        ("django-q tasks", f"{a}/django_q/success/"),
        ("report: orders (7 days)", "/reports/orders/"),
        ("report: orders BTCUSDT filled", q("/reports/orders/", symbol="BTCUSDT", status="filled")),
        ("report: PnL (7 days)", "/reports/pnl/"),
        ("report: PnL by strategy", q("/reports/pnl/", group_by="strategy")),
        ("API orders", "/api/orders/"),
        ("API orders status=new", q("/api/orders/", status="new")),
        ("API orders symbol=BTCUSDT status=filled", q("/api/orders/", symbol="BTCUSDT", status="filled")),
        ("API orders strategy=strat-03", q("/api/orders/", strategy="strat-03")),
        ("API orders strategy=rare-strategy", q("/api/orders/", strategy="rare-strategy")),
        ("API orders strategy + last week", q("/api/orders/", strategy="strat-03", created_after=week_ago)),
        ("API orders before a month ago", q("/api/orders/", created_before=month_ago)),
        ("API orders dry-run", q("/api/orders/", is_dry_run="true")),
        ("API orders by signal", q("/api/orders/", signal_id=str(signal))),
        ("API order detail", f"/api/orders/ol-{recent}/"),
        ("API executions", "/api/executions/"),
        ("API executions type=Funding", q("/api/executions/", exec_type="Funding")),
        ("API executions type=Delivery (none)", q("/api/executions/", exec_type="Delivery")),
        ("API executions of an order", q("/api/executions/", order_link_id=f"ol-{old}")),
        ("API executions strategy=rare-strategy", q("/api/executions/", strategy="rare-strategy")),
        ("API executions symbol + last week", q("/api/executions/", symbol="SOLUSDT", exec_after=week_ago)),
        ("API signals", "/api/signals/"),
        ("API signals status=rejected", q("/api/signals/", status="rejected")),
        ("API signals strategy=rare-strategy", q("/api/signals/", strategy="rare-strategy")),
        ("API signals received last week", q("/api/signals/", received_after=week_ago)),
        ("API signals before a month ago", q("/api/signals/", received_before=month_ago)),
        ("API signal detail", f"/api/signals/{signal}/"),
        ("API positions", "/api/positions/"),
        ("API position snapshots", f"/api/positions/{position}/snapshots/"),
        ("API reconciliation runs", "/api/reconciliation-runs/"),
        ("API reconciliation runs unresolved", q("/api/reconciliation-runs/", status="unresolved")),
        ("API risk limits", "/api/risk-limits/"),
        ("API PnL report (24 h)", "/api/reports/pnl/"),
        ("API PnL report by strategy (7 days)", q("/api/reports/pnl/", group_by="strategy", start=week_ago)),
        ("API health", "/api/health/"),
    ]


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - matches the seed's md5(), not security


def _md5_uuid(text: str) -> str:
    import uuid

    return str(uuid.UUID(_md5(text)))


def time_pages(targets: list[tuple[str, str]], *, repeat: int, explain: bool, slow_ms: float) -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(raise_request_exception=False)  # a 500 is a result to print, not the end of the bench
    client.force_login(_risk_staff())
    results = []
    print(f"{'page':46} {'median':>9} {'max':>8} {'queries':>7} {'slowest query':>13}")
    for label, url in targets:
        _get(client, url)  # warm: caches, plans, the pages of the indexes a user would have hot
        samples, captured = [], None
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                status = _get(client, url)
                samples.append((time.perf_counter() - started) * 1000)
            captured = queries.captured_queries
        slowest = max(captured, key=lambda q: float(q["time"]), default={"time": "0", "sql": ""})
        row = {
            "label": label, "url": url, "status": status, "median_ms": statistics.median(samples),
            "max_ms": max(samples), "queries": len(captured), "slowest_ms": float(slowest["time"]) * 1000,
        }  # fmt: skip
        results.append(row)
        flag = "" if status == 200 else f"  HTTP {status}"
        print(f"{label:46} {row['median_ms']:7.0f}ms {row['max_ms']:6.0f}ms {row['queries']:7d} "
              f"{row['slowest_ms']:11.0f}ms{flag}")  # fmt: skip
        if explain and row["median_ms"] >= slow_ms:
            _explain(slowest["sql"])
    return results


def _get(client, url: str) -> int:
    response = client.get(url)
    if hasattr(response, "streaming_content"):
        for _ in response.streaming_content:
            pass
    return response.status_code


def _explain(sql: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        plan = "\n".join("      " + r[0] for r in cursor.fetchall())
    print(f"    slowest: {sql[:300]}\n{plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--executions", type=int, default=5_000_000)
    parser.add_argument("--snapshots", type=int, default=500_000)
    parser.add_argument("--exchange-calls", type=int, default=1_000_000)
    parser.add_argument("--reseed", action="store_true", help="seed again even if the database holds this data")
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="", help="time only pages whose label contains this text")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest query of slow pages")
    parser.add_argument("--slow-ms", type=float, default=200.0, help="what --explain calls slow")
    args = parser.parse_args()
    # The bench is one user making hundreds of requests: lift the per-user throttle.
    db_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    setup_postgres(db_url, API_THROTTLE_USER="1000000/min")
    # What one commit costs on this machine right now (page times read against it; load shows here too).
    print(commit_floor(db_url).line(), flush=True)

    params = f"orders={args.orders} executions={args.executions} snapshots={args.snapshots} " \
             f"exchange_calls={args.exchange_calls}"  # fmt: skip
    meta = _meta_get()
    if args.reseed or meta is None or meta[0] != params:
        seeded_at = seed(orders=args.orders, executions=args.executions, snapshots=args.snapshots,
                         exchange_calls=args.exchange_calls)  # fmt: skip
        _meta_set(params, seeded_at)
    else:
        seeded_at = meta[1]
        print(f"using the data seeded at {seeded_at:%Y-%m-%d %H:%M} UTC ({params}); --reseed to seed again")
    # The PnL report's closed days (PositionPnlDay): summed once after a seed, then only what is missing.
    from orders.services.pnl_days import pnl_days_refresh  # here: needs django.setup() (setup_postgres) first

    started = time.perf_counter()
    days = pnl_days_refresh()
    print(f"PnL days summed: {days} (position, day) in {time.perf_counter() - started:.1f} s", flush=True)
    if args.seed_only:
        return
    every = pages(orders=args.orders, executions=args.executions, seeded_at=seeded_at)
    targets = [(label, url) for label, url in every if args.only.lower() in label.lower()]
    results = time_pages(targets, repeat=args.repeat, explain=args.explain, slow_ms=args.slow_ms)
    slow = [r for r in results if r["median_ms"] >= 500 or r["status"] != 200]
    worst = max(results, key=lambda r: r["median_ms"])
    print(f"\n{len(results)} pages; slowest: {worst['label']} {worst['median_ms']:.0f} ms; "
          f"most queries: {max(r['queries'] for r in results)}; pages >= 500 ms or not 200: {len(slow)}")  # fmt: skip
    for r in slow:
        print(f"  {r['label']}: {r['median_ms']:.0f} ms, HTTP {r['status']}")


if __name__ == "__main__":
    main()
