"""Bybit client figures against the simulator: create+cancel round trips per second and per-call overhead.

    .venv/bin/python bench/exchange_client.py                 # 500 round trips per variant
    .venv/bin/python bench/exchange_client.py --n 2000 --repeat 3

Needs PostgreSQL because every HTTP attempt writes an ExchangeCall audit row: the database is
BENCH_DATABASE_URL, else DATABASE_URL, else postgres://postgres@127.0.0.1:5432/om_bench_client; it is created
if missing and migrated. Existing rows are left alone (the bench adds ~2,000 audit rows per 300 round trips).

A SimulatorServer (uvicorn in a child process, so it does not compete with the client for this process's
GIL; rate limits lifted so they do not cap the figure) answers the variants doing the same work, one order
at a time: a PostOnly limit Buy far below the market (it rests), then its cancel by orderLinkId.
- ``bare httpx``: the baseline. A pooled httpx.Client, the request signed by hand with hmac, no checks.
- ``client, audit off``: BybitClient with ``audit=False`` (signing, rate-limit bookkeeping, envelope and
  retCode checks, parsing into OrderAck).
- ``client (audit on)``: BybitClient as production runs it: each HTTP attempt's row (request and redacted
  answer) appended to the process's audit spool and written by a thread (docs/decisions/0208).
- ``client, audit inline``: the same with EXCHANGE_AUDIT_SPOOL_DIR empty, one INSERT per call (0206's way);
  left out with ``--no-inline`` or when the spool is off anyway.
Reported per variant: round trips per second and wall ms per HTTP call (best of ``--repeat`` interleaved
runs: the least disturbed by other load on the machine), CPU ms per HTTP call spent in this process, all
threads (``time.process_time``: the client's own work, the audit writer included, immune to waiting on the
simulator), and CPU ms of the calling thread alone (``(caller)``: what a call itself pays). Ratios are to
the baseline. After the runs: the time the spool's writer still needed to have every row in the database,
and the number of rows written against the number of calls made.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._django import setup_postgres  # noqa: E402
from bench.floor import BareBybit, SimulatorProcess  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/om_bench_client"
BASE, NO_AUDIT, FULL, INLINE = "bare httpx (baseline)", "client, audit off", "client (audit on)", "client, audit inline"
SYMBOL = "BTCUSDT"  # the symbol BareBybit trades


def client_round_trip(client, link: str, price: Decimal) -> None:
    client.create_order(category="linear", symbol=SYMBOL, side="Buy", order_type="Limit", qty=Decimal("0.001"),
                        price=price, time_in_force="PostOnly", order_link_id=link)  # fmt: skip
    client.cancel_order(category="linear", symbol=SYMBOL, order_link_id=link)


def timed(round_trip, n: int, prefix: str) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, CPU seconds of the calling thread) for ``n`` round trips."""
    started, cpu_started, own_started = time.perf_counter(), time.process_time(), time.thread_time()
    for i in range(n):
        round_trip(f"{prefix}-{i}")
    return time.perf_counter() - started, time.process_time() - cpu_started, time.thread_time() - own_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="create+cancel round trips per variant and repeat")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (the best and the median are shown)")
    parser.add_argument("--no-inline", action="store_true", help="skip the 0206 variant (one INSERT per call)")
    args = parser.parse_args()
    setup_postgres(os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL") or DEFAULT_DB)

    import httpx
    from django.conf import settings
    from django.db import connection

    from exchange import audit_spool
    from exchange.bybit.client import BybitClient
    from exchange.models import ExchangeCall

    first_id = (ExchangeCall.objects.order_by("-id").values_list("id", flat=True).first() or 0) + 1
    connection.close()  # the child process must not share this connection
    with SimulatorProcess(api_key="bench-key", api_secret="bench-secret") as sim:
        sim_url = sim.url
        httpx.post(f"{sim.url}/sim/rate-limits", json={"scale": 100000}).raise_for_status()
        bare = BareBybit(sim.url, sim.api_key, sim.api_secret)
        audited = BybitClient(base_url=sim.url, api_key=sim.api_key, api_secret=sim.api_secret)
        unaudited = BybitClient(base_url=sim.url, api_key=sim.api_key, api_secret=sim.api_secret, audit=False)
        bare.offset_ms = audited.get_server_time_ms() - int(time.time() * 1000)
        price = (audited.get_tickers(category="linear", symbol=SYMBOL)[0].last_price / 2).quantize(Decimal("0.1"))
        spool_dir = settings.EXCHANGE_AUDIT_SPOOL_DIR

        def inline_trip(link: str) -> None:  # the audit as 0206 wrote it: one INSERT per call, inline
            settings.EXCHANGE_AUDIT_SPOOL_DIR = ""
            try:
                client_round_trip(audited, link, price)
            finally:
                settings.EXCHANGE_AUDIT_SPOOL_DIR = spool_dir

        variants = {
            BASE: lambda link: bare.round_trip(link, price),
            NO_AUDIT: lambda link: client_round_trip(unaudited, link, price),
            FULL: lambda link: client_round_trip(audited, link, price),
        }
        if spool_dir and not args.no_inline:
            variants[INLINE] = inline_trip
        run = uuid.uuid4().hex[:8]
        for v, trip in enumerate(variants.values()):  # warm up connections, code paths and the database
            timed(trip, 20, f"w{run}v{v}")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for r in range(args.repeat):  # interleaved, so drift hits every variant alike
            for v, (name, trip) in enumerate(variants.items()):
                results[name].append(timed(trip, args.n, f"b{run}r{r}v{v}"))
        flush_started = time.perf_counter()
        flushed = audit_spool.flush(60)  # the spool's writer thread may still hold the last rows
        flush_ms = (time.perf_counter() - flush_started) * 1000
        rows = ExchangeCall.objects.filter(id__gte=first_id, path__in=["/v5/order/create", "/v5/order/cancel"])
        rows = rows.count()

    calls = 2 * args.n
    print(f"\nBybit client vs bare httpx — simulator {sim_url} (child process), PostgreSQL "
          f"{connection.settings_dict['NAME']}, {args.n} create+cancel round trips x {args.repeat} runs\n")  # fmt: skip
    print(f"{'variant':<24}{'round trips/s':>15}{'wall ms/call':>14}{'(median)':>10}{'CPU ms/call':>13}"
          f"{'(caller)':>10}")  # fmt: skip
    wall, cpu, own = {}, {}, {}
    for name, runs in results.items():
        best = min(runs)
        wall[name], cpu[name] = best[0] / calls * 1000, min(r[1] for r in runs) / calls * 1000
        own[name] = min(r[2] for r in runs) / calls * 1000
        median_ms = statistics.median(r[0] for r in runs) / calls * 1000
        print(f"{name:<24}{args.n / best[0]:>15.0f}{wall[name]:>14.3f}{median_ms:>10.3f}{cpu[name]:>13.3f}"
              f"{own[name]:>10.3f}")  # fmt: skip
    print()
    for label, fig in (("wall", wall), ("CPU", cpu), ("CPU of the calling thread", own)):
        parts = [f"{name} {fig[name] / fig[BASE]:.2f}x ({fig[name] - fig[BASE]:+.3f} ms)" for name in results
                 if name != BASE]  # fmt: skip
        print(f"ratio to bare httpx per call ({label}): " + "; ".join(parts))
    print(f"the audit's own cost per call (audit on minus audit off): wall {wall[FULL] - wall[NO_AUDIT]:+.3f} ms, "
          f"CPU {cpu[FULL] - cpu[NO_AUDIT]:+.3f} ms (writer thread included), "
          f"calling thread {own[FULL] - own[NO_AUDIT]:+.3f} ms")
    mode = (f"spooled to {settings.EXCHANGE_AUDIT_SPOOL_DIR} (fsync {settings.EXCHANGE_AUDIT_SPOOL_FSYNC}), "
            f"written by a thread" if settings.EXCHANGE_AUDIT_SPOOL_DIR else "one INSERT per call, inline")
    expected = 2 * (args.n * args.repeat + 20) * (2 if INLINE in results else 1)
    print(f"\naudit: {mode}; rows written for create/cancel: {rows} (expected {expected}); "
          f"after the last call the writer needed {flush_ms:.0f} ms more{'' if flushed else ' (NOT flushed)'}")


if __name__ == "__main__":
    main()
