from datetime import timedelta

import pytest
from django.utils import timezone

from ordermanager.api.authentication import INVALID_KEY
from ordermanager.core.models import ApiKey
from ordermanager.core.services.api_keys import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db
URL = "/api/orders/"


def test_no_credentials_is_401_with_the_scheme_to_use(api_client):
    response = api_client().get(URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json()["code"] == "not_authenticated"


def test_a_valid_key_authenticates_as_its_user(api_trader_client):
    response = api_trader_client.get(URL)
    assert response.status_code == 200


def test_the_key_is_stored_only_as_a_digest(api_trader):
    row = ApiKey.objects.get(user=api_trader)
    assert api_trader.raw_api_key not in (row.key_hash, row.prefix, row.name)
    assert len(row.key_hash) == 64
    assert api_trader.raw_api_key.startswith(f"om_{row.prefix}.")


@pytest.mark.parametrize("header", ["Api-Key om_deadbeef.nope", "Api-Key not-a-key", "Api-Key"])
def test_a_wrong_key_is_401(api_client, api_trader, header):
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_key_with_the_right_prefix_but_wrong_secret_is_refused(api_client, api_trader):
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_trader.raw_api_key[:-2]}xx")
    assert client.get(URL).json()["message"] == INVALID_KEY


def test_a_revoked_key_is_refused_at_once(api_trader, api_trader_client, risk_admin):
    key = ApiKey.objects.get(user=api_trader)
    assert api_key_revoke(api_key=key, user=risk_admin) is True
    assert api_key_revoke(api_key=key, user=risk_admin) is False  # once only
    assert api_trader_client.get(URL).status_code == 401
    key.refresh_from_db()
    assert key.revoked_by == risk_admin


def test_an_expired_key_is_refused(api_client, api_trader):
    _, raw = api_key_create(user=api_trader, name="old", expires_at=timezone.now() - timedelta(seconds=1))
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    assert client.get(URL).status_code == 401


def test_a_key_of_a_deactivated_user_is_refused(api_trader, api_trader_client):
    api_trader.is_active = False
    api_trader.save()
    assert api_trader_client.get(URL).status_code == 401


def test_use_is_recorded_at_most_once_a_minute(api_trader, api_trader_client, django_assert_num_queries):
    api_trader_client.get(URL)
    first = ApiKey.objects.get(user=api_trader).last_used_at
    assert first is not None
    api_trader_client.get(URL)
    assert ApiKey.objects.get(user=api_trader).last_used_at == first


def test_staff_session_works_in_the_browsable_api(api_client, readonly_staff):
    response = api_client(readonly_staff).get(URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert b"Order List" in response.content or b"orders" in response.content.lower()
