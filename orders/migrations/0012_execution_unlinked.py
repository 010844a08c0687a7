"""Partial indexes of the executions still waiting for their order, by the exchange's orderId and by our
orderLinkId: what the fill path's order lookup asks on every order event. Without them the lookup walked every
execution without an order, and funding fees never get one (docs/decisions/0338). Built CONCURRENTLY on
PostgreSQL (docs/decisions/0512); they hold only executions that wait for an order, so they stay small.
"""

from django.db import migrations, models

from ordermanager.core.migration_ops import AddIndexOnline


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY on PostgreSQL cannot run in a transaction (see AddIndexOnline).
    atomic = False

    dependencies = [
        ("orders", "0011_order_active_symbol"),
    ]

    operations = [
        AddIndexOnline(
            model_name="execution",
            index=models.Index(
                condition=models.Q(("order__isnull", True), models.Q(("exchange_order_id", ""), _negated=True)),
                fields=["exchange_order_id"],
                name="execution_unlinked_order",
            ),
        ),
        AddIndexOnline(
            model_name="execution",
            index=models.Index(
                condition=models.Q(("order__isnull", True), models.Q(("order_link_id", ""), _negated=True)),
                fields=["order_link_id"],
                name="execution_unlinked_link",
            ),
        ),
    ]
