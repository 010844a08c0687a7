"""``Order.booked_qty``: the sum of the order's stored executions, kept by the fill path (docs/decisions/0336).

Existing orders take the sum of what is stored for them now, in one statement (a correlated sum, the same
text on PostgreSQL and SQLite). Going back drops the column; nothing else reads it.
"""

from django.db import migrations, models

BACKFILL = """
UPDATE orders_order SET booked_qty = (
    SELECT SUM(e.exec_qty) FROM orders_execution e WHERE e.order_id = orders_order.id
)
WHERE EXISTS (SELECT 1 FROM orders_execution e WHERE e.order_id = orders_order.id)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0009_jobs_in_one_module"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="booked_qty",
            field=models.DecimalField(decimal_places=18, default=0, max_digits=36),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
    ]
