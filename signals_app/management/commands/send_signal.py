"""Send one trading signal, for people and demos.

    python manage.py send_signal --asset BTCUSDT --side buy --amount 100 [--confidence 0.5]
        [--price 64250.5 --spread 1.5] [--urgent] [--warmup] [--strategy manual] [--direct]

Publishes a contract-valid message to the broker when ``SIGNAL_BROKER_URL`` is
set (``--direct`` skips the broker), otherwise writes it into the inbox
through the same intake as every other door.
"""

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from signals_app.amqp import broker_connection, signal_publish
from signals_app.services.intake import signal_intake


def _decimal(text: str) -> str:
    try:
        Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{text!r} is not a decimal number") from None
    return text


class Command(BaseCommand):
    help = "Send one trading signal (to the broker, or straight into the inbox without one)."

    def add_arguments(self, parser):
        parser.add_argument("--asset", required=True, help="exchange symbol, e.g. BTCUSDT")
        parser.add_argument("--side", required=True, choices=["buy", "sell"])
        parser.add_argument("--amount", required=True, type=_decimal, help="USDT")
        parser.add_argument("--confidence", default="0.5", type=_decimal)
        parser.add_argument("--price", type=_decimal, help="market snapshot price")
        parser.add_argument("--spread", type=_decimal, help="market snapshot spread")
        parser.add_argument("--urgent", action="store_true", help="metadata.urgency = true (market order)")
        parser.add_argument("--warmup", action="store_true")
        parser.add_argument("--strategy", default="manual")
        parser.add_argument("--signal-id", default=None)
        parser.add_argument("--trace-id", default=None, help="body trace_id (default: a fresh W3C trace id)")
        parser.add_argument("--traceparent", default=None,
                            help="W3C traceparent sent with the message (as a header); its trace-id wins")
        parser.add_argument("--direct", action="store_true", help="write into the inbox even with a broker")

    def handle(self, *args, **o):
        message = {
            "signal_id": o["signal_id"] or str(uuid.uuid4()),
            "signal_type": o["side"],
            "asset": o["asset"].upper(),
            "amount": o["amount"],
            "confidence": "__CONFIDENCE__",
            "timestamp": datetime.now(UTC).isoformat(),
            "strategy_id": o["strategy"],
            "is_warmup": o["warmup"],
            "metadata": {"urgency": o["urgent"]},
            "trace_id": o["trace_id"] or uuid.uuid4().hex,
        }
        if o["price"]:
            message["market_data_snapshot"] = {"price": o["price"], "spread": o["spread"]}
        # confidence is a JSON number in the contract; splice the exact text in instead of going through float.
        body = json.dumps(message).replace('"__CONFIDENCE__"', o["confidence"]).encode()
        if settings.SIGNAL_BROKER_URL and not o["direct"]:
            with broker_connection() as connection:
                headers = {"traceparent": o["traceparent"]} if o["traceparent"] else None
                signal_publish(body=body, connection=connection, headers=headers)
            self.stdout.write(f"published signal {message['signal_id']} to {settings.SIGNAL_QUEUE}")
            return
        result = signal_intake(payload=body, source="cli", traceparent=o["traceparent"])
        if result.rejected_reason:
            raise CommandError(f"signal rejected: {result.rejected_reason}")
        state = "stored" if result.created else "already in the inbox"
        self.stdout.write(f"signal {message['signal_id']} {state} ({result.signal.status})")
