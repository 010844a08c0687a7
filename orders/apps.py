from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "orders"

    def ready(self):
        # exchange imports no domain app: its audit backlog marks symbols for a backfill through this hook.
        # Imported here, not at module level: both load models, which need the app registry ready().
        from exchange.audit import audit_backlog_mark_set
        from orders.reconcile.backfill_marks import backfill_mark

        audit_backlog_mark_set(backfill_mark)
        # Likewise the fill metrics (ordermanager.metrics, below every app) read which executions are new here.
        from ordermanager.metrics import exec_ids_lookup_set
        from orders.selectors.executions import exec_ids_stored_since

        exec_ids_lookup_set(exec_ids_stored_since)
