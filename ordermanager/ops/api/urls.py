"""Everything under /api/ (namespace "api"), plus the OpenAPI schema and Swagger UI."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from ordermanager.api.docs import SwaggerDocsView
from ordermanager.ops.api.health import HealthApi
from orders import apis as orders
from positions import apis as positions
from signals_app.apis import SignalCollectionApi, SignalDetailApi

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SwaggerDocsView.as_view(url_name="api:schema"), name="docs"),
    path("health/", HealthApi.as_view(), name="health"),
    path("orders/", orders.OrderListApi.as_view(), name="order-list"),
    path("orders/<str:order_link_id>/", orders.OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<str:order_link_id>/cancel/", orders.OrderCancelApi.as_view(), name="order-cancel"),
    path("executions/", orders.ExecutionListApi.as_view(), name="execution-list"),
    path("signals/", SignalCollectionApi.as_view(), name="signal-list"),  # GET list + POST intake
    path("signals/<uuid:signal_id>/", SignalDetailApi.as_view(), name="signal-detail"),
    path("positions/", positions.PositionListApi.as_view(), name="position-list"),
    path("positions/<int:position_id>/", positions.PositionDetailApi.as_view(), name="position-detail"),
    path(
        "positions/<int:position_id>/snapshots/",
        positions.PositionSnapshotListApi.as_view(),
        name="position-snapshots",
    ),
    path("risk-limits/", orders.RiskLimitListApi.as_view(), name="risk-limit-list"),
    path("risk-limits/create/", orders.RiskLimitCreateApi.as_view(), name="risk-limit-create"),
    path("risk-limits/<int:risk_limit_id>/", orders.RiskLimitDetailApi.as_view(), name="risk-limit-detail"),
    path("risk-limits/<int:risk_limit_id>/update/", orders.RiskLimitUpdateApi.as_view(), name="risk-limit-update"),
    path("trading-halt/", orders.TradingHaltApi.as_view(), name="trading-halt"),
    path("reconciliation-runs/", orders.ReconciliationRunListApi.as_view(), name="reconciliation-list"),
    path("reconciliation-runs/start/", orders.ReconciliationStartApi.as_view(), name="reconciliation-start"),
    path(
        "reconciliation-runs/<int:run_id>/", orders.ReconciliationRunDetailApi.as_view(), name="reconciliation-detail"
    ),
    path("reconcile/", orders.ReconcileApi.as_view(), name="reconcile"),  # synchronous run (RECON, decision 0605)
    path("reconciliation-tasks/<str:task>/", orders.ReconciliationTaskApi.as_view(), name="reconciliation-task"),
    path("reports/pnl/", orders.PnlReportApi.as_view(), name="report-pnl"),
]
