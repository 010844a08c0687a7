"""The dashboard updates itself after a fill, over the Channels group "dashboard", without a reload."""

import socket
import threading
import time
from decimal import Decimal

import pytest
from selenium.webdriver.common.by import By

from exchange.bybit.types import ExecutionInfo
from orders.models import OrderStatus
from orders.services.fills import execution_apply
from tests.browser.conftest import wait_for
from tests.orders.factories import OrderFactory

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


class _AsgiServer:
    """The real ASGI application (HTTP + WebSockets) under uvicorn in a thread, on a free port."""

    def __init__(self):
        import uvicorn

        from ordermanager.asgi import application

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(application, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self):
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "ASGI server did not start"
            time.sleep(0.02)  # polling a start flag with a deadline
        return self

    def __exit__(self, *exc):
        self._server.should_exit = True
        self._thread.join(timeout=5)


@pytest.fixture
def redis_channel_layer(settings, redis_url):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}
    }
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _fill(order, qty, price):
    info = ExecutionInfo(
        category="linear", symbol=order.symbol, exec_id="dash-fill-1", order_id=order.order_id,
        order_link_id=order.order_link_id, side="Buy", exec_type="Trade", exec_qty=Decimal(qty),
        exec_price=Decimal(price), exec_value=Decimal(qty) * Decimal(price), exec_fee=Decimal("0"),
        fee_currency="USDT", is_maker=False, closed_size=None, leaves_qty=Decimal(0),
        exec_time_ms=int(time.time() * 1000), seq=1,
    )  # fmt: skip
    assert execution_apply(execution=info) is True


def test_dashboard_shows_a_new_position_after_a_fill_without_reloading(browser, login, risk_staff, redis_channel_layer):
    order = OrderFactory(symbol="DASHUSDT", status=OrderStatus.NEW, qty=Decimal("2"), price=Decimal("100"))
    with _AsgiServer() as server:
        base = login(risk_staff, server=server)
        browser.get(f"{base}/admin/dashboard/")
        wait_for(browser, lambda d: d.find_element(By.ID, "live-state").get_attribute("data-state") == "open")
        assert "DASHUSDT" not in browser.find_element(By.ID, "exposure").text
        browser.execute_script("window.__noReload = true;")
        _fill(order, "2", "100")
        wait_for(browser, lambda d: "DASHUSDT" in d.find_element(By.ID, "exposure").text, timeout=15)
        assert browser.execute_script("return window.__noReload === true;")
