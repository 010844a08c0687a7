"""What a new user sees first (issue 13): roles, health details, charts, CSV, labels, forms and reports."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin import helpers
from django.utils import timezone

from ordermanager.core import charts
from ordermanager.core.charts import Series, svg_line_chart
from orders.models import Discrepancy, OrderStatus
from tests.orders.factories import OrderFactory, ReconciliationRunFactory, RiskLimitFactory

pytestmark = pytest.mark.django_db


def page(client, user, url, **kwargs):
    client.force_login(user)
    response = client.get(url, **kwargs)
    return response, response.content.decode()


# --- roles --------------------------------------------------------------------------------------


@pytest.fixture
def halted():
    return RiskLimitFactory(symbol="", trading_halted=True, halt_reason="exchange incident")


def test_a_viewer_sees_no_resume_button_while_trading_is_halted(client, readonly_staff, halted):
    _, html = page(client, readonly_staff, "/admin/dashboard/live/")

    assert "TRADING IS HALTED" in html
    assert "/admin/orders/risklimit/trading-halt/" not in html and "Resume" not in html
    assert "Risk staff can resume trading" in html


def test_risk_staff_see_the_resume_button_while_trading_is_halted(client, risk_staff, halted):
    _, html = page(client, risk_staff, "/admin/dashboard/live/")

    assert 'href="/admin/orders/risklimit/trading-halt/">Resume…</a>' in html


def test_a_viewer_following_a_forbidden_link_is_told_why(client, readonly_staff, halted):
    response, html = page(client, readonly_staff, "/admin/orders/risklimit/trading-halt/")

    assert response.status_code == 403
    assert "Halting or resuming trading needs the permission to change risk limits" in html
    assert "victor.viewer" in html and "role: Viewer" in html
    assert 'id="user-tools"' in html or "Log out" in html or "/admin/" in html


def test_a_forbidden_admin_page_without_a_reason_still_explains(client, readonly_staff):
    response, html = page(client, readonly_staff, "/admin/orders/risklimit/add/")

    assert response.status_code == 403
    assert "Not allowed" in html and "Viewers see every page of the desk but change nothing" in html


# --- health -----------------------------------------------------------------------------------------


def jobs_detail() -> str:
    from ordermanager.dashboard.selectors import health_components

    return next(c for c in health_components() if c.name == "jobs").detail


def test_jobs_health_says_it_waits_for_schedules_when_there_are_none():
    assert "waiting for schedules (manage.py start_ingest sets them up)" in jobs_detail()


def test_jobs_health_names_the_next_job_and_who_runs_it():
    from django_q.models import Schedule

    due = timezone.now() + timedelta(minutes=5)
    Schedule.objects.create(name="stale order sweep", func="orders.services.jobs.x", next_run=due)

    assert f"waiting for stale order sweep at {due:%H:%M:%S} UTC (run by qcluster)" in jobs_detail()


def test_jobs_health_says_qcluster_is_behind_when_a_job_is_overdue():
    from django_q.models import Schedule

    Schedule.objects.create(name="marks", func="orders.services.jobs.x", next_run=timezone.now() - timedelta(minutes=3))

    assert "waiting for qcluster to run marks" in jobs_detail() and "is qcluster running?" in jobs_detail()


# --- charts -------------------------------------------------------------------------------------------


def test_a_single_point_is_drawn():
    svg = svg_line_chart([Series("orders per day", [(datetime(2026, 1, 1, tzinfo=UTC), Decimal("4"))])], title="t")

    assert svg.count('<circle class="point"') == 1


def test_legend_labels_do_not_overlap():
    when = datetime(2026, 1, 1, tzinfo=UTC)
    labels = ["book PnL (realized + unrealized)", "unrealized", "realized"]
    svg = svg_line_chart([Series(label, [(when, Decimal(1)), (when + timedelta(hours=1), Decimal(2))])
                          for label in labels], title="t")  # fmt: skip

    xs = [float(x) for x in re.findall(r'<text class="legend" x="([0-9.]+)"', svg)]
    assert len(xs) == 3
    for (x, label), next_x in zip(zip(xs, labels, strict=True), xs[1:], strict=False):
        assert next_x >= x + charts.legend_width(label), (label, x, next_x)


def test_the_orders_chart_counts_a_day_without_orders_as_zero(client, readonly_staff, monkeypatch):
    from ordermanager.reports import views

    drawn = []
    monkeypatch.setattr(views, "svg_line_chart", lambda series, **kw: drawn.extend(series) or "")
    for day, count in ((1, 1), (3, 2)):
        for _ in range(count):
            order = OrderFactory()
            order.created_at = datetime(2026, 3, day, 12, tzinfo=UTC)
            order.save(update_fields=["created_at"])

    page(client, readonly_staff, "/reports/orders/?start=2026-03-01&end=2026-03-03")

    assert [(when.day, value) for when, value in drawn[0].points] == [(1, 1), (2, 0), (3, 2)]


# --- CSV, labels, tables, forms ----------------------------------------------------------------------------


def test_the_orders_csv_carries_the_cancel_note_and_who_cancelled(client, risk_staff, readonly_staff):
    OrderFactory(order_link_id="om-cancelled-1", status=OrderStatus.CANCELLED, cancel_reason="manual",
                 cancel_note="desk decision before the FOMC", cancelled_by=risk_staff)  # fmt: skip
    client.force_login(readonly_staff)
    today = timezone.now().date()

    response = client.get(f"/reports/orders/?start={today}&end={today}&format=csv")

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = next(r for r in rows if r["order_link_id"] == "om-cancelled-1")
    assert row["cancel_note"] == "desk decision before the FOMC"
    assert row["cancelled_by"] == risk_staff.username


def test_discrepancies_are_labelled_as_such(client, risk_admin):
    _, html = page(client, risk_admin, "/admin/")

    assert "Discrepancies" in html and "Discrepancys" not in html


def test_one_order_to_cancel_is_counted_in_the_singular(client, risk_staff):
    order = OrderFactory()
    client.force_login(risk_staff)

    response = client.post("/admin/orders/order/", {"action": "cancel_on_exchange",
                                                    helpers.ACTION_CHECKBOX_NAME: [order.pk]})  # fmt: skip

    text = re.sub(r"<[^>]+>", "", response.content.decode())
    assert "1 order will be cancelled on the exchange" in text
    assert "These 1" not in text


def test_discrepancy_before_and_after_are_a_readable_table(client, risk_admin):
    run = ReconciliationRunFactory()
    Discrepancy.objects.create(run=run, kind="order_closed_on_exchange", symbol="BTCUSDT", order_link_id="om-x",
                               before={"status": "new", "filled_qty": "0"},
                               after={"status": "filled", "filled_qty": "0.01"})  # fmt: skip

    for url in (f"/admin/orders/reconciliationrun/{run.pk}/change/",
                f"/admin/orders/discrepancy/{Discrepancy.objects.get().pk}/change/"):  # fmt: skip
        _, html = page(client, risk_admin, url)
        assert '<table class="before-after">' in html, url
        assert re.search(r"<tr[^>]*><th>status</th><td>new</td><td>filled</td></tr>", html), url
        assert "&quot;status&quot;" not in html and '{"status"' not in html, url


def test_a_new_per_symbol_limit_starts_from_the_global_values(client, risk_staff):
    RiskLimitFactory(symbol="", max_position_size=Decimal("12345.50"), max_exposure=Decimal("99000"),
                     max_order_size_ratio=Decimal("0.25"))  # fmt: skip

    _, html = page(client, risk_staff, "/admin/orders/risklimit/add/")

    assert re.search(r'name="max_position_size" value="12345.5"', html)
    assert re.search(r'name="max_exposure" value="99000"', html)
    assert re.search(r'name="max_order_size_ratio" value="0.25"', html)


# --- reports -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/reports/orders/", "/reports/pnl/"])
def test_reports_carry_the_admin_header_the_user_and_log_out(client, risk_admin, url):
    response, html = page(client, risk_admin, url)

    assert response.status_code == 200
    assert 'id="user-tools"' in html and risk_admin.username in html
    assert 'id="logout-form"' in html and "Log out" in html
    assert "Order Manager" in html or "site-name" in html


@pytest.mark.parametrize("url", ["/reports/orders/", "/reports/pnl/"])
def test_reports_show_the_dates_they_applied(client, readonly_staff, url):
    today = timezone.now().date()
    first = today - timedelta(days=6)

    _, html = page(client, readonly_staff, url)

    assert f'name="start" value="{first:%Y-%m-%d}"' in html
    assert f'name="end" value="{today:%Y-%m-%d}"' in html
    assert f"From {first:%Y-%m-%d} to {today:%Y-%m-%d} (both days included, UTC)" in html
