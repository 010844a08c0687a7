"""MAX_POSITION_SIZE becomes a base-currency quantity; the USDT figure moves to max_position_value.

Until now ``max_position_size`` held a USDT value. Every existing row keeps exactly what it allowed: its
figure moves to ``max_position_value`` (USDT) and ``max_position_size`` (now base units) is left blank,
i.e. no limit in base units. Reversing puts the USDT figure back (a row without one gets the largest value
the column holds, which is what "no limit" meant before nullable limits existed).
"""

from decimal import Decimal

from django.db import migrations, models
from django.db.models import F, Value
from django.db.models.functions import Coalesce

NO_LIMIT = Decimal("999999999999999999")


def forwards(apps, schema_editor):
    RiskLimit = apps.get_model("orders", "RiskLimit")
    RiskLimit.objects.update(max_position_value=F("max_position_size"), max_position_size=None)


def backwards(apps, schema_editor):
    RiskLimit = apps.get_model("orders", "RiskLimit")
    money = models.DecimalField(max_digits=36, decimal_places=18)
    RiskLimit.objects.update(max_position_size=Coalesce(F("max_position_value"), Value(NO_LIMIT), output_field=money))


class Migration(migrations.Migration):
    dependencies = [("orders", "0004_continuous_reconcile")]

    operations = [
        migrations.AddField(
            model_name="risklimit",
            name="max_position_value",
            field=models.DecimalField(
                blank=True, decimal_places=18, max_digits=36, null=True, verbose_name="max position value (USDT)",
                help_text="Largest position value per symbol in USDT after an order, resting orders on the same "
                          "side included. Blank = no limit in USDT.",
            ),  # fmt: skip
        ),
        migrations.AlterField(
            model_name="risklimit",
            name="max_position_size",
            field=models.DecimalField(
                blank=True, decimal_places=18, max_digits=36, null=True, verbose_name="max position size (base units)",
                help_text="Largest position per symbol in base-currency units (e.g. BTC for BTCUSDT) after an "
                          "order, resting orders on the same side included. Blank = no limit in base units.",
            ),  # fmt: skip
        ),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            model_name="risklimit",
            name="max_exposure",
            field=models.DecimalField(
                decimal_places=18, max_digits=36, verbose_name="max exposure (USDT)",
                help_text="Largest total value across symbols in USDT: positions plus resting orders (global row).",
            ),
        ),
        migrations.AddConstraint(
            model_name="risklimit",
            constraint=models.CheckConstraint(
                condition=models.Q(max_position_value__gte=0), name="risklimit_value_non_negative"
            ),
        ),
    ]
