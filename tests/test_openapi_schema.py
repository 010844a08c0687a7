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

    with django_db_blocker.unblock():
        response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
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


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


@pytest.mark.postgres  # integer bounds in the schema follow the database's column ranges; CI's is PostgreSQL
def test_the_committed_schema_yml_is_current():
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    assert SCHEMA_FILE.read_text() == out.getvalue(), (
        "schema.yml is out of date: run `DATABASE_URL=postgres://... .venv/bin/python manage.py spectacular "
        "--validate --fail-on-warn --file schema.yml` and review the diff"
    )
