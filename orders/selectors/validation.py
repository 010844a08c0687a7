"""Aggregate reads over executions (the fill book).

``positions_recompute_differences`` is the position validation query: in one
SQL statement it recomputes every position from the ``Execution`` rows and
returns only the positions whose stored state differs. Why it can be one pass
over a million fills without replaying history (docs/decisions/0402):

- Size, fees and funding are plain sums over executions.
- Average entry and realized PnL are path dependent, so each position keeps a
  ledger (``PositionLedgerEntry``): one entry per execution with the state
  after it. The query checks every entry against the previous one with the
  fold rules of ``positions.services.position_math`` (a window ``LAG``, in the
  ledger's index order, so nothing is sorted), checks that the ledger holds
  exactly the position's executions (count, sums and an id checksum against
  ``Execution``), and that the position row equals the last entry. By
  induction the stored position is the fold of its executions.
- The average-entry step is checked without division: ``new_avg`` is right
  when ``|new_avg * N - X| <= N/2`` units of 1e-18 (half-up rounding), with
  X = |S|*avg + |q|*price and N = |S + q|. Everything else is exact numeric.

PostgreSQL is exact; on SQLite (embedded default, ~15 significant digits)
values compare with a small relative tolerance and the id checksum is a length sum.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction

from ordermanager.core.epoch import epoch_ms
from orders.models import Execution
from positions.selectors import position_sql_tables
from positions.services.position_math import POSITION_MOVING_TYPES


@dataclass(frozen=True)
class PositionDifference:
    category: str
    symbol: str
    position_idx: int
    position_id: int | None
    stored: dict
    expected: dict
    problems: tuple[str, ...]


_COLUMNS = (
    "category, symbol, position_idx, position_id, p_size, p_entry, p_realized, p_fees, p_funding, "
    "l_size, l_entry, l_realized, l_fees, l_funding, bad_steps, ex_n, l_n, ex_qty, ex_fees, ex_funding, "
    "inputs_ok, steps_ok, row_ok, size_ok"
).split(", ")


def positions_recompute_differences(
    *, workers: int | None = None, symbols: list[str] | None = None
) -> list[PositionDifference]:
    """Every position (and every executions group without a position) whose stored state is not the fold of its
    executions, with what is stored, what the executions give, and which check failed.

    On PostgreSQL the statement runs as ``workers`` slices (by symbol hash) on as many
    connections at once: a window function does not run in parallel inside one query,
    and each slice is a complete validation of its symbols (default: one per CPU, up to 8).
    With ``symbols`` only those symbols are validated (completely: every position and
    executions group of each), in one statement.
    """
    if symbols is not None:
        if not symbols:
            return []
        return _differences(_validation_sql(connection.vendor, symbols=len(symbols))[0], list(symbols) * 3)
    if connection.vendor != "postgresql":
        return _differences(_validation_sql(connection.vendor)[0], [])
    workers = workers or min(os.cpu_count() or 1, MAX_WORKERS)
    if workers == 1 or connection.in_atomic_block:
        # Inside a transaction other connections would not see its rows: validate here.
        return _differences(_validation_sql(connection.vendor)[0], [])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda k: _in_own_connection(_differences, *_sliced(k, workers)), range(workers)))
    return sorted((d for part in parts for d in part), key=lambda d: (d.symbol, d.position_idx))


MAX_WORKERS = 8


def _sliced(k: int, n: int) -> tuple[str, list]:
    return _validation_sql("postgresql", slice_=(k, n))[0], [n, k] * 3


def _differences(sql: str, params: list) -> list[PositionDifference]:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # JIT compilation costs more than it saves on this one-pass scan; and the slice
            # filter's row estimate is far too low, which would pick sorting a million
            # executions over hashing them into a few hundred groups.
            cursor.execute("SET LOCAL jit = off")
            cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(sql, params or None)
        rows = cursor.fetchall()
    return [_difference(dict(zip(_COLUMNS, row, strict=True))) for row in rows]


def _in_own_connection(fn, *args):
    try:
        return fn(*args)
    finally:
        connection.close()


def position_executions(*, category: str, symbol: str, position_idx: int) -> list[dict]:
    """The executions applied to one position, as values for ``position_rebuild`` (repair path only)."""
    rows = Execution.objects.filter(category=category, symbol=symbol, position_idx=position_idx).values(
        "exec_id", "exec_type", "exec_time", "seq", "side", "exec_qty", "exec_price", "exec_fee", "order_id"
    )
    return [
        {
            "exec_id": r["exec_id"],
            "exec_type": r["exec_type"],
            "exec_time_ms": epoch_ms(r["exec_time"]),
            "seq": r["seq"] or 0,
            "side": r["side"],
            "qty": r["exec_qty"],
            "price": r["exec_price"],
            "fee": r["exec_fee"],
            "has_order": r["order_id"] is not None,
        }
        for r in rows
    ]


def _difference(row: dict) -> PositionDifference:
    problems = tuple(
        name
        for name, ok in (
            ("ledger_vs_executions", row["inputs_ok"]),
            ("ledger_steps", row["steps_ok"]),
            ("stored_vs_ledger", row["row_ok"]),
            ("size_vs_executions", row["size_ok"]),
        )
        if not ok
    )
    stored = {k[2:]: _text(row[k]) for k in ("p_size", "p_entry", "p_realized", "p_fees", "p_funding")}
    expected = {k[2:]: _text(row[k]) for k in ("l_size", "l_entry", "l_realized", "l_fees", "l_funding")}
    expected.update(
        bad_steps=row["bad_steps"] or 0,
        executions=int(row["ex_n"] or 0),
        ledger_entries=row["l_n"] or 0,
        executions_net_qty=_text(row["ex_qty"]),
        executions_fees=_text(row["ex_fees"]),
        executions_funding=_text(row["ex_funding"]),
    )
    return PositionDifference(
        category=row["category"],
        symbol=row["symbol"],
        position_idx=row["position_idx"],
        position_id=row["position_id"],
        stored=stored,
        expected=expected,
        problems=problems,
    )


def _text(value) -> str | None:
    if value is None:
        return None
    return str(value if isinstance(value, Decimal) else Decimal(str(value)))


def _validation_sql(
    vendor: str, *, slice_: tuple[int, int] | None = None, symbols: int | None = None
) -> tuple[str, list]:
    pg = vendor == "postgresql"
    # A slice keeps the symbols whose hash falls in it (params: modulus, remainder, three times); a list of
    # ``symbols`` names keeps those (params: the names, three times).
    listed = ", ".join(["%s"] * (symbols or 0))
    in_slice = (
        (lambda col: f"AND abs(hashtext({col})) %% %s = %s")
        if slice_
        else (lambda col: f"AND {col} IN ({listed})")
        if symbols
        else (lambda col: "")
    )
    # Our own constants, inlined as literals (checked to be plain words).
    assert all(t.isalnum() for t in POSITION_MOVING_TYPES)
    moving = ", ".join(f"'{t}'" for t in POSITION_MOVING_TYPES)
    collate = ' COLLATE "C"' if pg else ""
    combine = "BIT_XOR" if pg else "SUM"
    least = "LEAST" if pg else "MIN"

    def eq(a: str, b: str) -> str:
        if pg:
            return f"({a} = {b})"
        return f"(abs(({a}) - ({b})) <= 1e-9 * (1 + abs({b})))"

    def eqz(a: str, b: str) -> str:  # NULL-safe: a missing side counts as a zero state
        return eq(f"COALESCE({a}, 0)", f"COALESCE({b}, 0)")

    def fingerprint(exec_id: str, exec_ms: str) -> str:
        # Which executions, at which times: on PostgreSQL one 64-bit hash of (execId, time) per row,
        # XOR-ed (an int8 accumulator; exec ids are unique on both sides, so XOR loses nothing a sum
        # would catch); SQLite has neither function, so there it is a sum of times plus id lengths.
        if pg:
            return f"BIT_XOR(hashtextextended({exec_id}, {exec_ms}))"
        return f"SUM({exec_ms} + length({exec_id}))"

    # float8 epoch seconds * 1000 rounds back to the exact millisecond (53-bit mantissa).
    exec_ms = (
        "ROUND(date_part('epoch', e.exec_time) * 1000)::bigint"
        if pg
        else "CAST(ROUND((julianday(e.exec_time) - 2440587.5) * 86400000) AS INTEGER)"
    )
    # Increase: a1 is X/N rounded to 18 places <=> |a1*N - X| <= N/2 (in units of 1e-18). (The exact
    # tie side is not checked: one multiplication fewer per row, and a tie is off by one unit at most.)
    half = "0.0000000000000000005"
    gap = "(f.a1 * ABS(f.s1) - (ABS(f.s0) * f.a0 + f.qty * f.price))"
    entry_inc_ok = f"(ABS({gap}) <= ABS(f.s1) * {half})" if pg else f"(abs({gap}) <= 1e-9 * (1 + abs(f.a1 * f.s1)))"
    q = "CASE WHEN f.buy THEN f.qty ELSE -f.qty END"
    realized_reduce = (
        f"f.r0 - f.fee + CASE WHEN f.s0 > 0 THEN ROUND({least}(f.qty, f.s0) * (f.price - f.a0), 18)"
        f" ELSE ROUND({least}(f.qty, -f.s0) * (f.a0 - f.price), 18) END"
    )
    t_exec = Execution._meta.db_table
    t_ledger, t_pos = position_sql_tables()["ledger"], position_sql_tables()["position"]
    # = ANY(ARRAY(...)) is computed once and keeps the ledger index scan (and its order).
    ids_of_slice = f"SELECT p1.id FROM {t_pos} p1 WHERE TRUE {in_slice('p1.symbol')}"
    ledger_slice = (
        (f"AND l.position_id = ANY(ARRAY({ids_of_slice}))" if pg else f"AND l.position_id IN ({ids_of_slice})")
        if slice_ or symbols
        else ""
    )
    sql = f"""
WITH ex AS MATERIALIZED (
    -- Grouped by type and side first, so the per-row work is plain sums; the rules apply per group.
    SELECT g.category, g.symbol, g.position_idx, SUM(g.n) AS n,
        SUM(CASE WHEN g.exec_type IN ({moving}) AND g.side = 'Buy' THEN g.qty
                 WHEN g.exec_type IN ({moving}) AND g.side = 'Sell' THEN -g.qty ELSE 0 END) AS net_qty,
        SUM(CASE WHEN g.exec_type IN ({moving}) AND g.side IN ('Buy', 'Sell') THEN g.fee ELSE 0 END) AS fees,
        SUM(CASE WHEN g.exec_type = 'Funding' THEN g.fee ELSE 0 END) AS funding,
        SUM(g.qty + g.price + g.fee) AS mix, {combine}(g.fp) AS fp
    FROM (
        SELECT e.category, e.symbol, e.position_idx, e.exec_type, e.side, COUNT(*) AS n,
            SUM(e.exec_qty) AS qty, SUM(e.exec_price) AS price, SUM(e.exec_fee) AS fee,
            {fingerprint("e.exec_id", exec_ms)} AS fp
        FROM {t_exec} e
        WHERE TRUE {in_slice("e.symbol")}
        GROUP BY e.category, e.symbol, e.position_idx, e.exec_type, e.side
    ) g
    GROUP BY g.category, g.symbol, g.position_idx
),
typed AS (
    -- The row's kind is computed here, once per row, below the window: the CTEs above are inlined, and a
    -- column defined there is an expression the planner repeats at every reference (the exec type's IN
    -- list is seven text comparisons), while one defined here reaches them as a plain column (0516).
    SELECT l.position_id, l.position_idx AS idx, l.qty, l.price, l.fee, l.exec_time_ms,
        l.exec_id, l.size_after AS s1, l.avg_entry_after AS a1, l.realized_after AS r1,
        (l.exec_type IN ({moving}) AND l.side IN ('Buy', 'Sell')) AS moves,
        (l.exec_type = 'Funding') AS funding_row, (l.side = 'Buy') AS buy,
        LAG(l.size_after, 1, 0) OVER w AS s0, LAG(l.avg_entry_after, 1, 0) OVER w AS a0,
        LAG(l.realized_after, 1, 0) OVER w AS r0,
        LEAD(l.seq, 1) OVER w IS NULL AS is_last
    FROM {t_ledger} l
    WHERE TRUE {ledger_slice}
    -- ROWS frame: LAG/LEAD ignore frames, and it spares the window the peer comparisons of RANGE.
    WINDOW w AS (PARTITION BY l.position_id ORDER BY l.exec_time_ms, l.seq, l.exec_id{collate}
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
flagged AS (
    SELECT t.*, (t.moves AND t.qty <> 0 AND CASE WHEN t.s0 = 0 THEN (t.idx = 0 OR (t.idx = 1) = t.buy)
                                                 ELSE (t.s0 > 0) = t.buy END) AS inc
    FROM typed t
),
checked AS (
    SELECT f.position_id, f.exec_id, f.is_last, f.moves, f.funding_row, f.buy, f.qty, f.price, f.fee,
        f.exec_time_ms,
        CASE
            WHEN NOT f.moves THEN {eq("f.s1", "f.s0")} AND {eq("f.a1", "f.a0")}
                AND {eq("f.r1", "f.r0 - CASE WHEN f.funding_row THEN f.fee ELSE 0 END")}
            WHEN f.inc THEN {eq("f.s1", f"f.s0 + {q}")} AND {eq("f.r1", "f.r0 - f.fee")} AND {entry_inc_ok}
            ELSE
                CASE WHEN f.idx <> 0 AND f.qty > ABS(f.s0) THEN {eq("f.s1", "0")}
                     ELSE {eq("f.s1", f"f.s0 + {q}")} END
                AND {eq("f.r1", realized_reduce)}
                AND CASE WHEN f.s1 = 0 THEN {eq("f.a1", "0")}
                         WHEN f.qty > ABS(f.s0) THEN {eq("f.a1", "f.price")}
                         ELSE {eq("f.a1", "f.a0")} END
        END AS ok
    FROM flagged f
),
led AS MATERIALIZED (
    SELECT c.position_id, COUNT(*) AS n, SUM(CASE WHEN c.ok THEN 0 ELSE 1 END) AS bad_steps,
        SUM(CASE WHEN NOT c.moves THEN 0 WHEN c.buy THEN c.qty ELSE -c.qty END) AS net_qty,
        SUM(c.qty + c.price + c.fee) AS mix, {fingerprint("c.exec_id", "c.exec_time_ms")} AS fp,
        MAX(CASE WHEN c.is_last THEN c.exec_id END) AS last_exec_id
    FROM checked c
    GROUP BY c.position_id
),
book AS (
    SELECT p.id AS position_id, p.category, p.symbol, p.position_idx,
        CASE WHEN p.position_idx = 2 THEN -p.size ELSE p.size END AS p_size,
        p.avg_entry_price AS p_entry, p.realized_pnl AS p_realized, p.fees_paid AS p_fees,
        p.funding_paid AS p_funding, led.n, led.bad_steps, led.net_qty, led.mix, led.fp,
        last.size_after, last.avg_entry_after AS entry_after,
        last.realized_after
    FROM {t_pos} p
        LEFT JOIN led ON led.position_id = p.id
        LEFT JOIN {t_ledger} last ON last.exec_id = led.last_exec_id
    WHERE TRUE {in_slice("p.symbol")}
),
compared AS (
    SELECT COALESCE(b.category, ex.category) AS category, COALESCE(b.symbol, ex.symbol) AS symbol,
        COALESCE(b.position_idx, ex.position_idx) AS position_idx, b.position_id,
        b.p_size, b.p_entry, b.p_realized, b.p_fees, b.p_funding,
        b.size_after AS l_size, b.entry_after AS l_entry, b.realized_after AS l_realized,
        ex.fees AS l_fees, ex.funding AS l_funding, b.bad_steps,
        ex.n AS ex_n, b.n AS l_n, ex.net_qty AS ex_qty, ex.fees AS ex_fees, ex.funding AS ex_funding,
        (COALESCE(ex.n, 0) = COALESCE(b.n, 0) AND {eqz("ex.net_qty", "b.net_qty")} AND {eqz("ex.mix", "b.mix")}
            AND COALESCE(ex.fp, 0) = COALESCE(b.fp, 0)) AS inputs_ok,
        (COALESCE(b.bad_steps, 0) = 0) AS steps_ok,
        ({eqz("b.p_size", "b.size_after")} AND {eqz("b.p_entry", "b.entry_after")}
            AND {eqz("b.p_realized", "b.realized_after")} AND {eqz("b.p_fees", "ex.fees")}
            AND {eqz("b.p_funding", "ex.funding")}) AS row_ok,
        (COALESCE(b.position_idx, ex.position_idx) <> 0 OR {eqz("b.p_size", "ex.net_qty")}) AS size_ok
    FROM book b FULL OUTER JOIN ex
        ON ex.category = b.category AND ex.symbol = b.symbol AND ex.position_idx = b.position_idx
)
SELECT {", ".join(_COLUMNS)} FROM compared
WHERE NOT (inputs_ok AND steps_ok AND row_ok AND size_ok)
ORDER BY symbol, position_idx
"""
    return sql, []
