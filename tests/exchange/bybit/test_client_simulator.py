"""The client against the Bybit simulator over real HTTP on localhost."""

import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from exchange.bybit import errors as E
from exchange.bybit.client import BybitClient, get_client
from exchange.bybit.ratelimit import RateLimiter
from exchange.bybit.retry import RetryPolicy
from exchange.bybit.types import OrderAck
from exchange.models import ExchangeCall

from .conftest import FakeClock

pytestmark = pytest.mark.django_db

BTC = "BTCUSDT"


def control(simulator, path: str, body: dict | None = None) -> dict:
    response = httpx.post(f"{simulator.url}{path}", json=body or {}, timeout=5)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def make_sim_client(simulator):
    clients = []

    def make(**overrides) -> BybitClient:
        options = dict(
            base_url=simulator.url, api_key=simulator.api_key, api_secret=simulator.api_secret, timeout=2.0,
            retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, multiplier=2.0, total_timeout=20.0),
        )  # fmt: skip
        options.update(overrides)
        client = BybitClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def limit_buy(client: BybitClient, link: str, *, symbol: str = BTC, price: str = "50000.0", qty: str = "0.001"):
    return client.create_order(category="linear", symbol=symbol, side="Buy", order_type="Limit",
                               qty=Decimal(qty), price=Decimal(price), order_link_id=link)  # fmt: skip


def market(client: BybitClient, link: str, *, side: str = "Buy", qty: str = "0.001", **kw) -> OrderAck:
    return client.create_order(category="linear", symbol=BTC, side=side, order_type="Market", qty=Decimal(qty),
                               order_link_id=link, **kw)  # fmt: skip


# ------------------------------------------------------------------ every endpoint


def test_get_client_talks_to_the_simulator(bybit_settings):
    client = get_client()
    assert client is get_client()
    assert client.base_url == bybit_settings.BYBIT_BASE_URL
    assert abs(client.get_server_time_ms() - time.time() * 1000) < 5000


def test_market_data_and_account(make_sim_client, simulator):
    client = make_sim_client()
    instruments = {i.symbol: i for i in client.get_instruments(category="linear")}
    assert {"BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"} <= set(instruments)
    assert (instruments[BTC].tick_size, instruments[BTC].qty_step) == (Decimal("0.10"), Decimal("0.001"))
    control(simulator, "/sim/price", {"symbol": BTC, "price": "64000.5"})
    [ticker] = client.get_tickers(category="linear", symbol=BTC)
    assert ticker.last_price == Decimal("64000.5") and ticker.bid1_price < ticker.last_price < ticker.ask1_price
    wallet = client.get_wallet_balance()
    assert wallet.account_type == "UNIFIED"
    assert wallet.coins[0].coin == "USDT" and wallet.total_wallet_balance == simulator.engine.initial_balance


def test_order_lifecycle(make_sim_client, simulator):
    client = make_sim_client()
    ack = limit_buy(client, "life-1", price="50000.0")
    assert ack.order_link_id == "life-1" and ack.order_id and not ack.resolved_existing
    [open_order] = client.get_open_orders(category="linear", symbol=BTC)
    assert (open_order.order_link_id, open_order.order_status, open_order.price) == ("life-1", "New", Decimal("50000"))
    amended = client.amend_order(category="linear", symbol=BTC, order_link_id="life-1", price=Decimal("50100.0"))
    assert amended.order_id == ack.order_id
    assert client.get_order(category="linear", symbol=BTC, order_link_id="life-1").price == Decimal("50100.0")
    client.cancel_order(category="linear", symbol=BTC, order_id=ack.order_id)
    info = client.get_order(category="linear", symbol=BTC, order_id=ack.order_id)
    assert info.order_status == "Cancelled"
    assert client.get_open_orders(category="linear", symbol=BTC) == []
    assert [o.order_link_id for o in client.get_order_history(category="linear", symbol=BTC)] == ["life-1"]
    assert client.get_order(category="linear", symbol=BTC, order_link_id="never-sent") is None


def test_fills_positions_and_cancel_all(make_sim_client, simulator):
    client = make_sim_client()
    market(client, "mkt-1", qty="0.002")
    [execution] = client.get_executions(category="linear", symbol=BTC)
    assert (execution.order_link_id, execution.exec_qty, execution.exec_type) == ("mkt-1", Decimal("0.002"), "Trade")
    [position] = client.get_positions(category="linear", symbol=BTC)
    assert (position.side, position.size) == ("Buy", Decimal("0.002"))
    assert [p.symbol for p in client.get_positions(category="linear")] == [BTC]  # settleCoin: non-zero only
    for i in range(3):
        limit_buy(client, f"rest-{i}", price="40000.0")
    acks = client.cancel_all_orders(category="linear", symbol=BTC)
    assert sorted(a.order_link_id for a in acks) == ["rest-0", "rest-1", "rest-2"]
    assert client.get_open_orders(category="linear", symbol=BTC) == []


def test_position_mode_switch(make_sim_client, simulator):
    client = make_sim_client()
    client.switch_position_mode(category="linear", symbol="ETHUSDT", mode=3)
    client.switch_position_mode(category="linear", symbol="ETHUSDT", mode=3)  # 110025 "not modified": no error
    assert simulator.engine.modes["ETHUSDT"] == 3
    ack = client.create_order(category="linear", symbol="ETHUSDT", side="Sell", order_type="Market",
                              qty=Decimal("0.01"), position_idx=2, order_link_id="hedge-short")  # fmt: skip
    assert ack.order_id
    with pytest.raises(E.BybitInvalidRequestError):  # 110024: a position exists
        client.switch_position_mode(category="linear", symbol="ETHUSDT", mode=0)


def test_pagination_past_one_page(make_sim_client, simulator):
    client = make_sim_client()
    for i in range(120):
        limit_buy(client, f"page-{i:03d}", price=str(Decimal("40000.0") + i))
    orders = client.get_open_orders(category="linear", symbol=BTC)
    assert sorted(o.order_link_id for o in orders) == [f"page-{i:03d}" for i in range(120)]
    pages = ExchangeCall.objects.filter(path="/v5/order/realtime")
    assert pages.count() == 3 and pages.filter(params__has_key="cursor").count() == 2
    assert client.get_order_history(category="linear", symbol=BTC) == []  # history holds closed orders only
    client.cancel_all_orders(category="linear", symbol=BTC)
    history = client.get_order_history(category="linear", symbol=BTC)
    assert len({o.order_id for o in history}) == 120


# ------------------------------------------------------------------ error classes over HTTP


def test_rejections_map_to_their_classes(make_sim_client, simulator):
    client = make_sim_client()
    cases = [
        (lambda: limit_buy(client, "bad-step", qty="0.0015"), E.BybitInvalidRequestError, 10001),
        (lambda: client.create_order(category="linear", symbol="DOGEUSDT", side="Buy", order_type="Limit",
                                     qty=Decimal("1"), price=Decimal("0.15"), order_link_id="tiny"),
         E.BybitMinNotionalError, 110094),
        (lambda: limit_buy(client, "huge", qty="1000"), E.BybitInsufficientBalanceError, 110007),
        (lambda: market(client, "ro", side="Sell", reduce_only=True), E.BybitReduceOnlyError, 110017),
        (lambda: client.cancel_order(category="linear", symbol=BTC, order_link_id="ghost"),
         E.BybitOrderNotFoundError, 110001),
    ]  # fmt: skip
    for call, cls, code in cases:
        with pytest.raises(cls) as info:
            call()
        assert info.value.ret_code == code and info.value.retryable is False
    assert simulator.engine.orders == {}
    # none of these was retried
    assert ExchangeCall.objects.filter(attempt__gt=1).count() == 0


def test_bad_credentials(make_sim_client, simulator):
    with pytest.raises(E.BybitAuthError) as info:
        make_sim_client(api_secret="wrong-secret-value").get_open_orders(category="linear", symbol=BTC)
    assert info.value.ret_code == 10004 and "wrong-secret-value" not in str(info.value)
    with pytest.raises(E.BybitAuthError) as info:
        make_sim_client(api_key="unknown-key").get_wallet_balance()
    assert info.value.ret_code == 10003


def test_connect_error_when_nothing_listens(make_sim_client):
    with socket_closed_port() as port:
        client = make_sim_client(base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(E.BybitConnectError) as info:
            client.get_tickers(category="linear")
    assert info.value.ambiguous is False


def test_clock_skew_is_corrected_and_a_clock_step_is_survived(make_sim_client, simulator):
    skewed = make_sim_client(wall_clock=lambda: time.time() + 30)  # 30 s fast: would be 10002 unsynced
    assert skewed.get_open_orders(category="linear", symbol=BTC) == []
    step = {"after_sync": False}

    def stepping_clock() -> float:  # the local clock jumps 10 s back right after the offset was measured
        return time.time() - (10 if step["after_sync"] else 0)

    client = make_sim_client(wall_clock=stepping_clock, retry=RetryPolicy(max_attempts=1))
    client.get_server_time_ms()
    step["after_sync"] = True
    client._offset_synced = True
    with pytest.raises(E.BybitTimestampError) as info:
        client.get_wallet_balance()
    assert info.value.ret_code == 10002
    client.retry = RetryPolicy(max_attempts=2, total_timeout=10)
    assert client.get_wallet_balance().account_type == "UNIFIED"  # re-synced and re-signed


@pytest.mark.parametrize(
    ("fault", "cls"),
    [({"rate_limit": 1.0}, E.BybitRateLimitError), ({"http_429": 1.0}, E.BybitRateLimitError),
     ({"server_error": 1.0}, E.BybitTransportError),
     ({"timeout": 1.0, "timeout_seconds": 1.0}, E.BybitTransportError)],
    ids=["10006", "http-429", "503", "timeout"],
)  # fmt: skip
def test_injected_faults_are_retried_then_reported(make_sim_client, simulator, fault, cls):
    control(simulator, "/sim/faults", {**fault, "paths": ["/v5/position/list"]})
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, base_delay=0.5, max_delay=2.0, total_timeout=30)
    client = make_sim_client(timeout=0.3, clock=clock, sleep=clock.sleep, retry=policy)
    with pytest.raises(cls):
        client.get_positions(category="linear", symbol=BTC)
    attempts = ExchangeCall.objects.filter(path="/v5/position/list").order_by("attempt")
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert len(clock.sleeps) == 2


def test_backoff_timing_with_a_fake_clock(make_sim_client, simulator):
    control(simulator, "/sim/faults", {"server_error": 1.0, "paths": ["/v5/market/tickers"]})
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, base_delay=1.0, max_delay=5.0, multiplier=2.0, total_timeout=60.0)
    client = make_sim_client(clock=clock, sleep=clock.sleep, retry=policy)
    started = time.monotonic()
    with pytest.raises(E.BybitTransportError) as info:
        client.get_tickers(category="linear", symbol=BTC)
    assert info.value.http_status == 503
    assert time.monotonic() - started < 2  # nothing really slept
    assert len(clock.sleeps) == 4
    for delay, ceiling in zip(clock.sleeps, [1.0, 2.0, 4.0, 5.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert simulator.state.faults.counts["server_error"] == 5
    # the next call after the faults clear succeeds without waiting
    control(simulator, "/sim/faults", {"server_error": 0.0})
    assert client.get_tickers(category="linear", symbol=BTC)[0].symbol == BTC


def test_total_timeout_bounds_the_retries(make_sim_client, simulator):
    control(simulator, "/sim/faults", {"server_error": 1.0, "paths": ["/v5/market/tickers"]})
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=20, base_delay=1.0, max_delay=30.0, multiplier=2.0, total_timeout=10.0)
    with pytest.raises(E.BybitTransportError):
        make_sim_client(clock=clock, sleep=clock.sleep, retry=policy).get_tickers(category="linear")
    assert sum(clock.sleeps) < 10.0
    assert simulator.state.faults.counts["server_error"] < 20


# ------------------------------------------------------------------ rate-limit slow-down


class _NoPacing(RateLimiter):
    def reserve(self, endpoint: str, *, now: float) -> float:
        return 0.0


def test_rate_limit_headers_slow_the_client_down_before_10006(make_sim_client, simulator):
    control(simulator, "/sim/rate-limits", {"limits": {"/v5/order/realtime": 3}})
    waits: list[float] = []

    def recording_sleep(seconds: float) -> None:  # the wait under test is the client's own pacing
        waits.append(seconds)
        time.sleep(seconds)

    client = make_sim_client(sleep=recording_sleep)
    for _ in range(7):
        client.get_open_orders(category="linear", symbol=BTC)
    calls = ExchangeCall.objects.filter(path="/v5/order/realtime")
    assert calls.count() == 7 and not calls.exclude(ret_code=0).exists()  # never hit 10006
    assert waits and all(0 < w <= 1.25 for w in waits)  # one window (1 s) plus the offset error and slack


def test_without_pacing_the_same_burst_hits_10006(make_sim_client, simulator):
    control(simulator, "/sim/rate-limits", {"limits": {"/v5/order/realtime": 3}})
    client = make_sim_client(rate_limiter=_NoPacing(), sleep=lambda s: time.sleep(min(s, 1.0)))  # real wait for reset
    for _ in range(5):
        client.get_open_orders(category="linear", symbol=BTC)
    assert ExchangeCall.objects.filter(path="/v5/order/realtime", ret_code=10006).exists()


# ------------------------------------------------------------------ never twice


@pytest.mark.slow
def test_dropped_create_responses_never_double_an_order(make_sim_client, simulator):
    control(simulator, "/sim/faults", {"drop_response": 0.3, "drop_response_mode": "504",
                                       "paths": ["/v5/order/create"], "seed": 4})  # fmt: skip
    client = make_sim_client(timeout=1.0)
    links = [f"drop-{i:04d}" for i in range(1000)]
    acks = [market(client, link) for link in links]
    engine = simulator.engine
    placed = [o.order_link_id for o in engine.orders.values()]
    assert len(placed) == 1000 and sorted(placed) == links  # exactly one order per orderLinkId
    dropped = simulator.state.faults.counts["drop_response"]
    assert 250 <= dropped <= 350
    assert sum(a.resolved_existing for a in acks) == dropped
    assert [a.order_link_id for a in acks] == links
    assert {a.order_id for a in acks} == set(engine.orders)
    assert ExchangeCall.objects.filter(path="/v5/order/create").count() == 1000  # never re-sent


def test_create_that_lands_after_the_client_gave_up_is_not_doubled(make_sim_client, simulator):
    # Every create is held 0.5 s before the exchange processes it; the client waits only 0.2 s.
    control(simulator, "/sim/faults", {"timeout": 1.0, "timeout_seconds": 0.5, "paths": ["/v5/order/create"]})
    policy = RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=0.2, multiplier=2.0, total_timeout=20.0)
    ack = market(make_sim_client(timeout=0.2, retry=policy), "late-1")
    assert ack.resolved_existing is True
    # Let every held request reach the engine (each answers 110072 to nobody), then count.
    deadline = time.monotonic() + 10
    while simulator._server.server_state.tasks and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not simulator._server.server_state.tasks
    assert [o.order_link_id for o in simulator.engine.orders.values()] == ["late-1"]
    assert ExchangeCall.objects.filter(path="/v5/order/create").count() >= 2  # it was re-sent, safely


def test_duplicate_link_id_from_another_process_resolves(make_sim_client, simulator):
    first = market(make_sim_client(), "twice-1")
    second = market(make_sim_client(), "twice-1")  # e.g. a restarted worker re-submitting
    assert second == OrderAck(order_id=first.order_id, order_link_id="twice-1", resolved_existing=True)
    assert len(simulator.engine.orders) == 1


def test_concurrent_creates_from_threads_share_one_client(make_sim_client, simulator):
    control(simulator, "/sim/faults", {"drop_response": 0.3, "paths": ["/v5/order/create"], "seed": 9})
    client = make_sim_client(audit=False)
    links = [f"thr-{i:03d}" for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        acks = list(pool.map(lambda link: market(client, link), links))
    assert sorted(o.order_link_id for o in simulator.engine.orders.values()) == links
    assert {a.order_id for a in acks} == set(simulator.engine.orders)


def test_dry_run_places_nothing_but_reads(make_sim_client, simulator):
    client = make_sim_client(dry_run=True)
    ack = market(client, "dry-1")
    assert ack.dry_run and ack.order_id == "dry-run-dry-1"
    assert simulator.engine.orders == {}
    assert client.get_open_orders(category="linear", symbol=BTC) == []
    assert ExchangeCall.objects.filter(dry_run=True, order_link_id="dry-1").count() == 1


# ------------------------------------------------------------------ helpers


class socket_closed_port:
    """A port that was free a moment ago and has nothing listening."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None
