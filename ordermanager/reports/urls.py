from django.urls import path

from ordermanager.reports import views

app_name = "reports"

urlpatterns = [
    path("orders/", views.orders_report, name="orders"),
    path("pnl/", views.pnl_report_view, name="pnl"),
]
