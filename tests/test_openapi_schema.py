"""The OpenAPI schema: served, complete, every error documented, and the committed schema.yml current."""

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schema.yml"

KEY_OPERATIONS = {
    ("/api/orders/", "get"),
    ("/api/orders/{order_link_id}/", "get"),
    ("/api/orders/{order_link_id}/cancel/", "post"),
    ("/api/executions/", "get"),
    ("/api/signals/", "get"),
    ("/api/signals/{signal_id}/", "get"),
    ("/api/positions/", "get"),
    ("/api/positions/{position_id}/snapshots/", "get"),
    ("/api/risk-limits/", "get"),
    ("/api/risk-limits/{risk_limit_id}/update/", "post"),
    ("/api/trading-halt/", "post"),
    ("/api/reconciliation-runs/", "get"),
    ("/api/reconciliation-runs/start/", "post"),
    ("/api/reconcile/", "post"),
    ("/api/reports/pnl/", "get"),
    ("/api/health/", "get"),
}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from rest_framework.test import APIClient

    reader = APIClient()
    # Any authenticated caller may read the schema; a stand-in user keeps this module-scoped fixture out of the DB.
    reader.force_authenticate(user=type("Reader", (), {"is_authenticated": True, "is_active": True, "pk": 0})())
    with django_db_blocker.unblock():
        response = reader.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    if response["Content-Type"].endswith("json"):
        return response.json()
    return yaml.safe_load(response.content)


def test_key_operations_are_documented(schema):
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert KEY_OPERATIONS <= operations


def test_every_operation_of_ours_documents_its_errors_with_the_envelope(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("401", "403"):
                assert status in responses, (path, method, status)
                ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/Error"), (path, method)


def test_api_key_auth_is_declared(schema):
    scheme = schema["components"]["securitySchemes"]["ApiKeyAuth"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "Authorization"}


def test_money_is_a_decimal_string(schema):
    qty = schema["components"]["schemas"]["Order"]["properties"]["qty"]
    assert qty["type"] == "string" and qty["format"] == "decimal"


def test_swagger_ui_is_served_to_a_staff_login(client, readonly_staff):
    client.force_login(readonly_staff)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_swagger_ui_sends_a_visitor_without_login_to_the_login_page(client):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/api/docs/"


def test_the_schema_is_refused_without_login_or_api_key(client):
    response = client.get("/api/schema/")
    assert response.status_code == 401
    assert b"paths" not in response.content


def test_the_schema_is_served_to_an_api_key(client, api_trader):
    from ordermanager.core.services.api_keys import api_key_create

    _, raw_key = api_key_create(user=api_trader, name="schema")
    response = client.get("/api/schema/?format=json", HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert response.status_code == 200
    assert "/api/orders/" in response.json()["paths"]


def test_swagger_ui_refuses_a_wrong_api_key_with_the_api_error(client):
    response = client.get("/api/docs/", HTTP_AUTHORIZATION="Api-Key wrong")
    assert response.status_code == 401


@pytest.mark.postgres  # integer bounds in the schema follow the database's column ranges; CI's is PostgreSQL
def test_the_committed_schema_yml_is_current():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert SCHEMA_FILE.read_text() == out.getvalue(), (
        "schema.yml is out of date: run `DATABASE_URL=postgres://... .venv/bin/python manage.py spectacular "
        "--validate --fail-on-warn --file schema.yml` and review the diff"
    )
