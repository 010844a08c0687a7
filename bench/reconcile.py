"""Reconciliation figure: one run over 10,000 open orders on 20 symbols, against the simulator.

    .venv/bin/python bench/reconcile.py                      # 10,000 orders, 20 symbols, 3 runs
    .venv/bin/python bench/reconcile.py --orders 2000 --symbols 5 --changed 100

Uses its own PostgreSQL database (BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/om_bench_reconcile), migrated and emptied first.

The simulator lists 5 linear symbols and, like Bybit, at most 500 open orders per
symbol; the bench starts it with synthetic BTC-like symbols (BENCH01USDT, ...) as
``extra_instruments`` so that 20 symbols x 500 orders fit. The open orders are seeded
with ``engine.seed_open_orders`` (placing 10,000 through the HTTP API would only time
the simulator); the database gets the matching Order rows. A timed run is the real
service end to end: every page of /v5/order/realtime over HTTP (50 a page), the
comparison, one execution query per symbol, the position listing, the run row.

``--changed N`` fills N of the orders on the exchange first (the consumer "was
stopped"), so the run also looks each one up and backfills its fill.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from decimal import ROUND_CEILING
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import setup_postgres  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/om_bench_reconcile"


def _empty() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE orders_discrepancy, orders_reconciliationrun, orders_execution, orders_order,"
            " positions_positionledgerentry, positions_positionsnapshot, positions_position,"
            " exchange_exchangecall RESTART IDENTITY CASCADE"
        )


def _extra_instruments(count: int) -> list[dict]:
    """Synthetic BTC-like instruments so that the simulator lists ``count`` linear symbols."""
    from exchange.simulator.instruments import LINEAR

    return [
        {"symbol": f"BENCH{n:02d}USDT", "price": "65000.00", "tickSize": "0.10", "qtyStep": "0.001",
         "minOrderQty": "0.001", "maxOrderQty": "1190.000", "maxMktOrderQty": "500.000", "minNotionalValue": "5"}
        for n in range(1, max(0, count - len(LINEAR)) + 1)
    ]


def _seed(engine, symbols: list[str], total: int) -> None:
    """``total`` resting buys spread over ``symbols`` (far below the price), in the engine and in our book."""
    from orders.models import Order, OrderStatus

    wanted = []
    for i in range(total):
        symbol = symbols[i % len(symbols)]
        spec = engine.linear[symbol]
        price = engine.prices[symbol] / 2 // spec.tick * spec.tick
        # At least ten lots and twice the minimum notional, rounded up to the step.
        lots = (spec.min_notional * 2 / price / spec.qty_step).to_integral_value(rounding=ROUND_CEILING)
        qty = max(spec.min_qty * 10, lots * spec.qty_step)
        wanted.append({"symbol": symbol, "side": "Buy", "qty": str(qty), "price": str(price),
                       "orderLinkId": f"{uuid.uuid4().hex}-0"})
    seeded = engine.seed_open_orders(wanted)
    rows = [Order(order_link_id=o.order_link_id, order_id=o.order_id, symbol=o.symbol, side="Buy",
                  order_type="Limit", time_in_force="GTC", qty=o.qty, price=o.price, status=OrderStatus.NEW,
                  exchange_updated_ms=o.updated_ms) for o in seeded]  # fmt: skip
    Order.objects.bulk_create(rows, batch_size=2000)


def _fill_some(engine, changed: int) -> None:
    with engine.lock:
        orders = sorted(engine.orders.values(), key=lambda o: o.n)[:changed]
    for order in orders:
        engine.force_fill(order_id=order.order_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--changed", type=int, default=0, help="orders filled while the consumer was stopped")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.orders > args.symbols * 500:
        parser.error("at most 500 open orders per symbol (Bybit's limit, kept by the simulator)")
    setup_postgres(os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))

    from django.conf import settings

    from exchange.bybit.client import get_client
    from exchange.models import ExchangeCall
    from exchange.simulator.server import SimulatorServer
    from orders.reconcile import reconcile

    with SimulatorServer(initial_balance="1000000000000", extra_instruments=_extra_instruments(args.symbols)) as sim:
        symbols = sorted(sim.engine.linear)[: args.symbols]
        settings.BYBIT_BASE_URL, settings.BYBIT_API_KEY, settings.BYBIT_API_SECRET = sim.url, "sim-key", "sim-secret"
        get_client.cache_clear()
        timings = []
        for n in range(args.runs):
            sim.reset()
            _empty()
            _seed(sim.engine, symbols, args.orders)
            _fill_some(sim.engine, args.changed)
            started = time.perf_counter()
            run = reconcile(trigger="command")
            elapsed = time.perf_counter() - started
            timings.append(elapsed)
            calls = ExchangeCall.objects.count()
            found = run.discrepancies.count()
            print(f"run {n + 1}: {elapsed:.2f} s  status={run.status} checked={run.checked} updated={run.updated} "
                  f"backfilled={run.backfilled} discrepancies={found} http_calls={calls}")
            assert run.status == "succeeded", run.error
            assert run.checked >= args.orders and run.updated == args.changed
    best, median = min(timings), statistics.median(timings)
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(f"\nreconcile: {args.orders} open orders over {args.symbols} symbols, {args.changed} changed: "
          f"median {median:.2f} s, best {best:.2f} s (aim < 5 s) on {engine}")


if __name__ == "__main__":
    main()
