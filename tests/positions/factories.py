from decimal import Decimal

import factory
from django.utils import timezone

from positions.models import Position, PositionSnapshot


class PositionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Position

    symbol = factory.Sequence(lambda n: f"SYM{n}USDT")
    position_idx = 0
    size = Decimal("0.010")
    avg_entry_price = Decimal("64000")
    mark_price = Decimal("64100")


class PositionSnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PositionSnapshot

    position = factory.SubFactory(PositionFactory)
    size = factory.LazyAttribute(lambda o: o.position.size)
    avg_entry_price = factory.LazyAttribute(lambda o: o.position.avg_entry_price)
    mark_price = factory.LazyAttribute(lambda o: o.position.mark_price)
    realized_pnl = Decimal("0")
    unrealized_pnl = Decimal("1.0")
    taken_at = factory.LazyFunction(timezone.now)
