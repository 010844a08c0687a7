"""``Order.booked_qty``: the sum of the order's stored executions, kept by the fill path; ``may_be_unsettled``,
computed by the database from the row, and the partial index of the rows where it holds: what a decision's
freshness check scans (docs/decisions/0336).

Existing orders take the sum of what is stored for them now, in one statement (a correlated sum, the same
text on PostgreSQL and SQLite), before the computed column is added. Going back drops the columns and the
index; nothing else reads them.
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
        migrations.AddField(
            model_name='order',
            name='may_be_unsettled',
            field=models.GeneratedField(db_persist=True, expression=models.ExpressionWrapper(models.Q(('is_dry_run', False), ('is_external', False), ('status__in', ['new', 'partially_filled', 'pending_cancel', 'filled', 'cancelled']), models.Q(('order_id', ''), _negated=True), models.Q(models.Q(('exchange_updated_ms', 0), ('status__in', ('new', 'partially_filled', 'pending_cancel'))), ('filled_qty__gt', models.F('booked_qty')), models.Q(('booked_qty', 0), ('submitted_at__isnull', False), models.Q(models.Q(('order_type', 'Market'), models.Q(('status', 'cancelled'), _negated=True)), ('filled_qty__gt', 0), _connector='OR')), _connector='OR')), output_field=models.BooleanField()), output_field=models.BooleanField()),
        ),
        migrations.AddIndex(
            model_name='order',
            index=models.Index(condition=models.Q(('may_be_unsettled', True)), fields=['symbol', 'created_at'], name='order_may_be_unsettled'),
        ),
    ]
