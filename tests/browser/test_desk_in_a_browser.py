"""What a risk officer does, in a real browser: change a limit, cancel an order, reconcile."""

from decimal import Decimal

import pytest
from selenium.webdriver.common.by import By

from orders.models import OrderStatus, ReconciliationRun, RiskLimit
from tests.browser.conftest import wait_for
from tests.orders.factories import OrderFactory, RiskLimitFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_risk_staff_tightens_a_limit(browser, login, risk_staff):
    row = RiskLimitFactory(symbol="")
    base = login(risk_staff)
    browser.get(f"{base}/admin/orders/risklimit/{row.pk}/change/")
    field = browser.find_element(By.NAME, "max_position_size")
    field.clear()
    field.send_keys("1234.5")
    browser.find_element(By.NAME, "change_reason").send_keys("tighter for the FOMC")
    browser.find_element(By.NAME, "_save").click()
    wait_for(browser, lambda d: "was changed successfully" in d.page_source)
    row.refresh_from_db()
    assert row.max_position_size == Decimal("1234.5")


def test_risk_staff_cancels_an_order_through_the_confirmation_page(browser, login, risk_staff, bybit_settings):
    from exchange.bybit.client import get_client

    link = "om-browser-cancel-01"
    ack = get_client().create_order(
        category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=Decimal("0.01"),
        price=Decimal("1000"), time_in_force="GTC", order_link_id=link,
    )  # fmt: skip
    order = OrderFactory(order_link_id=link, order_id=ack.order_id, price=Decimal("1000"), qty=Decimal("0.01"),
                         time_in_force="GTC", post_only=False, status=OrderStatus.NEW)  # fmt: skip
    base = login(risk_staff)
    browser.get(f"{base}/admin/orders/order/?q={link}")
    browser.find_element(By.CSS_SELECTOR, f"input.action-select[value='{order.pk}']").click()
    browser.find_element(By.CSS_SELECTOR, "select[name=action] option[value=cancel_on_exchange]").click()
    browser.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "to-cancel"))
    assert link in browser.find_element(By.ID, "to-cancel").text
    browser.find_element(By.NAME, "reason").send_keys("desk decision")
    browser.find_element(By.ID, "confirm-cancel").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "cancel-report"))
    assert "Cancel accepted by the exchange" in browser.find_element(By.ID, "cancel-report").text
    on_exchange = get_client().get_order(category="linear", symbol="BTCUSDT", order_link_id=link)
    assert on_exchange.order_status == "Cancelled"


def test_risk_staff_starts_a_reconciliation_and_sees_its_result(browser, login, risk_staff, bybit_settings, simulator):
    from exchange.bybit.client import get_client

    # An order that filled on the exchange while we were not listening: the run must find and settle it.
    link = "om-browser-recon-01"
    ack = get_client().create_order(
        category="linear", symbol="BTCUSDT", side="Buy", order_type="Limit", qty=Decimal("0.01"),
        price=Decimal("1000"), time_in_force="GTC", order_link_id=link,
    )  # fmt: skip
    order = OrderFactory(order_link_id=link, order_id=ack.order_id, price=Decimal("1000"), qty=Decimal("0.01"),
                         time_in_force="GTC", post_only=False, status=OrderStatus.NEW)  # fmt: skip
    simulator.engine.set_price("BTCUSDT", "999")
    base = login(risk_staff)
    browser.get(f"{base}/admin/orders/reconciliationrun/")
    browser.find_element(By.ID, "reconcile-now").click()
    browser.find_element(By.ID, "confirm-reconcile").click()
    wait_for(browser, lambda d: "Reconciliation queued" in d.page_source)
    # django-q2 runs synchronously under the test settings; in production the page refreshes itself.
    run = wait_for(browser, lambda d: ReconciliationRun.objects.filter(trigger="admin").first())
    browser.get(f"{base}/admin/orders/reconciliationrun/")
    browser.find_element(By.CSS_SELECTOR, f"a[href$='/admin/orders/reconciliationrun/{run.pk}/change/']").click()
    wait_for(browser, lambda d: f"Reconciliation #{run.pk}" in d.page_source or link in d.page_source)
    page = browser.page_source
    assert link in page and "order_closed_on_exchange" in page, "the run's discrepancies are on its page"
    run.refresh_from_db()
    order.refresh_from_db()
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    assert order.status == OrderStatus.FILLED


def test_risk_staff_halts_trading_with_a_reason_and_the_desk_sees_it(browser, login, risk_staff):
    RiskLimitFactory(symbol="")
    base = login(risk_staff)
    browser.get(f"{base}/admin/orders/risklimit/")
    browser.find_element(By.ID, "halt-switch").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "halt-confirmation"))
    browser.find_element(By.NAME, "reason").send_keys("exchange incident")
    browser.find_element(By.ID, "confirm-halt").click()
    wait_for(browser, lambda d: "TRADING IS HALTED" in d.find_element(By.ID, "trading-state").text)
    assert RiskLimit.objects.get(symbol="").trading_halted
    browser.get(f"{base}/admin/dashboard/")
    assert "exchange incident" in browser.find_element(By.ID, "trading-state").text


def test_viewer_sees_but_cannot_halt(browser, login, readonly_staff):
    RiskLimitFactory(symbol="")
    base = login(readonly_staff)
    browser.get(f"{base}/admin/orders/risklimit/")
    assert "Trading is running" in browser.find_element(By.ID, "trading-state").text
    assert not browser.find_elements(By.ID, "halt-switch")
    assert not RiskLimit.objects.filter(trading_halted=True).exists()
