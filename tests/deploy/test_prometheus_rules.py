"""deploy/prometheus (alert rules and their promtool unit tests) and deploy/grafana: valid, and only over the
series the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from ordermanager import metrics
from tests.fixtures.servers import require

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
GRAFANA = ROOT / "deploy" / "grafana" / "ordermanager.json"

# The series /metrics exports (issue 15), name → type. The one list the rules and the dashboard are checked
# against; the last test holds it to ordermanager.metrics.METRIC_NAMES.
METRIC_NAMES = {
    "ordermanager_signal_inbox_backlog": "gauge",
    "ordermanager_signal_inbox_oldest_age_seconds": "gauge",
    "ordermanager_signal_queue_messages": "gauge",
    "ordermanager_signals_total": "counter",
    "ordermanager_signal_to_ack_seconds": "histogram",
    "ordermanager_signal_own_seconds": "histogram",
    "ordermanager_exchange_request_seconds": "histogram",
    "ordermanager_exchange_errors_total": "counter",
    "ordermanager_exchange_rate_limit_wait_seconds_total": "counter",
    "ordermanager_fills_total": "counter",
    "ordermanager_fill_lag_seconds": "histogram",
    "ordermanager_gateway_connections": "gauge",
    "ordermanager_reconciliation_discrepancies": "gauge",
    "ordermanager_position_validation_discrepancies": "gauge",
    "ordermanager_unrealized_pnl": "gauge",
    "ordermanager_exposure_usdt": "gauge",
    "ordermanager_process_heartbeat_age_seconds": "gauge",
}
HISTOGRAM_SERIES = ("_bucket", "_count", "_sum")

# PromQL words that are not series names: functions, aggregations, operators and modifiers.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "absent", "absent_over_time",
    "abs", "ceil", "floor", "round", "clamp_min", "clamp_max", "time", "vector", "scalar", "label_replace",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "changes", "resets",
    "le", "inf", "nan",
}


def promtool() -> str:
    path = shutil.which("promtool")
    require(path is not None, "needs promtool: `apt-get install prometheus` (Debian's package; .ci/run installs it)")
    return path


def series_names(expr: str) -> set[str]:
    """The series an expression reads: label matchers, grouping labels, strings and ranges removed first."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\$\w+", "", text)
    text = re.sub(r"\b\d+(\.\d+)?(ms|[smhdwy])?\b", "", text)  # numbers and durations (offset 5m)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def metric_of(series: str) -> str | None:
    if series in METRIC_NAMES:
        return series
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if base != series and METRIC_NAMES.get(base) == "histogram":
            return base
    return None


def rule_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def grafana_exprs() -> list[tuple[str, str]]:
    dashboard = json.loads(GRAFANA.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_promtool_checks_the_rules():
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 10 rules found" in done.stdout


def test_promtool_runs_the_rule_unit_tests():
    done = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120,
                          cwd=RULE_TESTS.parent)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_grafana_query_parses(tmp_path):
    # promtool parses PromQL only inside rule files: each panel query becomes a recording rule.
    rules = [{"record": f"grafana:panel_{i}", "expr": expr.replace("$__rate_interval", "5m")}
             for i, (_, expr) in enumerate(grafana_exprs())]
    path = tmp_path / "grafana_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("source", ["rules", "grafana"])
def test_every_series_used_is_one_the_service_exports(source):
    exprs = rule_exprs() if source == "rules" else grafana_exprs()
    assert exprs
    unknown = {(where, name) for where, expr in exprs for name in series_names(expr) if metric_of(name) is None}
    assert unknown == set()


def test_the_series_parser_sees_names_and_only_names():
    expr = ('histogram_quantile(0.99, sum by (le, endpoint) (rate(ordermanager_fill_lag_seconds_bucket{le="+Inf",'
            'x="up"}[5m]))) > 60 and up offset 5m')
    assert series_names(expr) == {"ordermanager_fill_lag_seconds_bucket", "up"}
    assert metric_of("ordermanager_fill_lag_seconds_count") == "ordermanager_fill_lag_seconds"
    assert metric_of("ordermanager_fills_total_count") is None  # suffixes only on histograms
    assert metric_of("up") is None


def test_the_grafana_dashboard_shows_every_series():
    used = {metric_of(name) for _, expr in grafana_exprs() for name in series_names(expr)}
    assert used == set(METRIC_NAMES)


def test_the_rule_thresholds_are_the_service_defaults(settings):
    # alerts.yml names the setting behind each shared threshold; the database evaluation uses the same number.
    named = re.findall(r"# (ALERT_[A-Z_]+)=([0-9.]+)", RULES.read_text())
    assert {name for name, _ in named} >= {"ALERT_INBOX_BACKLOG", "ALERT_SIGNAL_AGE_SECONDS", "ALERT_FILL_LAG_SECONDS",
                                          "ALERT_EXCHANGE_ERROR_RATE", "ALERT_HEARTBEAT_AGE_SECONDS"}
    for name, value in named:
        assert Decimal(str(getattr(settings, name))) == Decimal(value), name


def test_the_rules_know_exactly_the_series_the_service_exports():
    """The kinds above are the rules' view; the names must be the ones ordermanager.metrics exports."""
    assert set(METRIC_NAMES) == set(metrics.METRIC_NAMES)
