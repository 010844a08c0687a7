"""A partial index of the orders still open (pending submit, new, partially filled, pending cancel): what a
decision's book read sums for the exposure limit, found without scanning the table whatever the planner's
statistics say (docs/decisions/0337). Built CONCURRENTLY on PostgreSQL (docs/decisions/0512); it holds only
the open orders, so it is small on a desk's table of millions.
"""

from django.db import migrations, models

from ordermanager.core.migration_ops import AddIndexOnline


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY on PostgreSQL cannot run in a transaction (see AddIndexOnline).
    atomic = False

    dependencies = [
        ("orders", "0010_order_booked_qty"),
    ]

    operations = [
        AddIndexOnline(
            model_name="order",
            index=models.Index(
                condition=models.Q(("status__in", ("pending_submit", "new", "partially_filled", "pending_cancel"))),
                fields=["symbol"],
                name="order_active_symbol",
            ),
        ),
    ]
