import pytest

from tests.exchange.simulator.helpers import SignedHttp


@pytest.fixture
def http(simulator):
    client = SignedHttp(simulator.url, simulator.api_key, simulator.api_secret)
    yield client
    client.close()
