"""The signal inbox in the admin: search by signal id or trace id (a 32-hex trace id parses as a UUID too)."""

import uuid

import pytest

from tests.signals_app.factories import TradingSignalFactory

pytestmark = pytest.mark.django_db
URL = "/admin/signals_app/tradingsignal/"


@pytest.mark.parametrize("trace_id", [uuid.uuid4().hex, "trace-abc-123"], ids=["uuid-hex", "free-text"])
def test_search_by_trace_id_or_signal_id(client, readonly_staff, trace_id):
    signal = TradingSignalFactory(trace_id=trace_id)
    other = TradingSignalFactory(trace_id="other")
    client.force_login(readonly_staff)
    for term in (trace_id, str(signal.signal_id)):
        assert [s.pk for s in client.get(URL, {"q": term}).context["cl"].result_list] == [signal.pk], term
    assert [s.pk for s in client.get(URL, {"q": "other"}).context["cl"].result_list] == [other.pk]
