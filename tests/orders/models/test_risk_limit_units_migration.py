"""Migration 0003: a row's USDT figure moves to max_position_value; what every row allows is unchanged."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("orders", "0004_continuous_reconcile")]
AFTER = [("orders", "0005_risklimit_position_size_in_base_units")]


@pytest.mark.django_db(transaction=True)
def test_existing_rows_keep_what_they_allow_and_the_migration_reverses():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("orders", "RiskLimit")
    old.objects.create(symbol="", max_position_size=Decimal("50000"), max_exposure=Decimal("200000"),
                       max_order_size_ratio=Decimal("0.5"))
    old.objects.create(symbol="ETHUSDT", max_position_size=Decimal("1234.5"), max_exposure=Decimal("200000"),
                       max_order_size_ratio=Decimal("0.2"))

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("orders", "RiskLimit")
    rows = {r.symbol: (r.max_position_size, r.max_position_value) for r in new.objects.all()}
    assert rows == {"": (None, Decimal("50000")), "ETHUSDT": (None, Decimal("1234.5"))}

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("orders", "RiskLimit")
    assert {r.symbol: r.max_position_size for r in old.objects.all()} == {
        "": Decimal("50000"), "ETHUSDT": Decimal("1234.5")}
    old.objects.all().delete()
    MigrationExecutor(connection).migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
