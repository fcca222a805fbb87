"""The alert rules and the Grafana dashboard, checked by the tools their users run."""

from __future__ import annotations

import re
import subprocess

import pytest

from service.observability import metrics, replica_metrics
from tests.observability import harness

REQUIRED_PANELS = {
    "Cache hit rate",
    "Hit rate",
    "Request rate",
    "Request latency p50 / p95 / p99",
    "Error rate",
    "MySQL queries avoided",
    "MySQL query latency",
    "Redis call latency",
    "Invalidation lag",
    "Circuit breakers",
    "Request rate per pod",
    "Hit rate per pod",
    "Invalidation checkpoint age",
    "Consistency (nines)",
    "Inspector checks and inconsistencies",
    *harness.TOPOLOGY_PANELS,
}
REQUIRED_ALERTS = {
    "OrdersCacheHitRateLow",
    "OrdersErrorBudgetBurnFast",
    "OrdersErrorBudgetBurnSlow",
    "OrdersLatencyHigh",
    "OrdersInvalidationLagHigh",
    "OrdersRedisUnavailable",
    "OrdersMySQLUnavailable",
    "OrdersTargetDown",
    "OrdersCacheCheckpointStale",
    "OrdersCacheNotFollowed",
    "OrdersCacheInconsistent",
    # topologies (issues 19 and 20)
    "OrdersRedisFailover",
    "OrdersInvalidationStepLost",
    "OrdersCacheGroupCheckpointStalled",
    "OrdersDBReplicaBehind",
    "OrdersReplicaFillsFallingBack",
    "OrdersMySQLPrimaryChanged",
}


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_rule_file() -> None:
    done = run(str(harness.tool("promtool")), "check", "rules", str(harness.RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass_for_every_alert() -> None:
    files = sorted(harness.RULE_TESTS.glob("*.yaml"))
    assert files, "no promtool unit tests in helm/orders/rules/tests"
    done = run(str(harness.tool("promtool")), "test", "rules", *map(str, files))
    assert done.returncode == 0, done.stdout + done.stderr
    tested = set()
    for path in files:
        tested |= set(re.findall(r"alertname: (\w+)", path.read_text()))
    assert tested >= REQUIRED_ALERTS


def test_every_alert_is_tested_both_firing_and_silent() -> None:
    import yaml

    outcomes: dict[str, set[bool]] = {}
    for path in harness.RULE_TESTS.glob("*.yaml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                outcomes.setdefault(check["alertname"], set()).add(bool(check["exp_alerts"]))
    for alert in REQUIRED_ALERTS:
        assert outcomes.get(alert) == {True, False}, f"{alert}: needs a firing and a silent case"


def test_the_rule_file_has_every_alert_each_with_a_runbook_and_severity() -> None:
    alerts = {r["alert"]: r for r in harness.rules() if "alert" in r}
    assert set(alerts) >= REQUIRED_ALERTS
    for name, rule in alerts.items():
        assert rule["annotations"].get("runbook"), f"{name} has no runbook annotation"
        assert rule["annotations"].get("summary"), f"{name} has no summary"
        assert rule["labels"]["severity"] in {"warning", "critical"}, name


def test_dashboard_validates_against_grafanas_dashboard_schema() -> None:
    done = run(
        str(harness.tool("check-jsonschema")),
        "--schemafile",
        str(harness.tool("dashboard-schema")),
        str(harness.DASHBOARD),
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_has_the_panels_operators_look_for() -> None:
    titles = {title for title, _ref, _expr in harness.dashboard_targets()}
    assert titles >= REQUIRED_PANELS


def test_dashboard_is_templated_on_namespace_and_instance() -> None:
    variables = {v["name"]: v for v in harness.dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "instance"} <= set(variables)
    for _title, _ref, expr in harness.dashboard_targets():
        assert 'namespace=~"$namespace"' in expr, expr
        assert 'instance=~"$instance"' in expr, expr


@pytest.mark.parametrize(
    ("title", "ref", "expr"), harness.dashboard_targets(), ids=lambda v: str(v)[:40]
)
def test_dashboard_queries_never_use_raw_paths_or_a_fixed_rate_window(
    title: str, ref: str, expr: str
) -> None:
    assert "path=" not in expr, f"{title}/{ref}: label by route template, never the raw path"
    for window in re.findall(r"\[([^\]]+)\]", expr):
        assert window == "$__rate_interval", f"{title}/{ref}: use $__rate_interval, not {window}"


def test_docs_list_every_metric_the_service_exports() -> None:
    text = (harness.ROOT / "docs" / "operations.md").read_text()
    names = [
        "http_request_duration_seconds",
        "orders_cache_requests_total",
        "orders_near_cache_resets_total",
        "orders_near_cache_entries",
        "orders_db_query_duration_seconds",
        "orders_db_errors_total",
        "orders_http_refused_total",
        "orders_redis_call_duration_seconds",
        "orders_redis_errors_total",
        "orders_circuit_breaker_state",
        "orders_invalidations_total",
        "orders_invalidation_lag_seconds",
        "orders_build_info",
        "orders_cache_checkpoint_age_seconds",
        "orders_cache_checkpoint_seen",
        "orders_cache_checkpoint_ahead_seconds",
        "orders_inspector_checks_total",
        "orders_inspector_mismatches_total",
        "orders_inspector_inconsistencies_total",
        "orders_inspector_repairs_total",
        "orders_redis_failovers_total",
        "orders_invalidator_rewinds_total",
        "orders_cache_group_checkpoint_age_seconds",
        "orders_db_replica_up",
        "orders_db_replica_lag_seconds",
        "orders_cache_fills_total",
        "orders_db_gtid_wait_seconds",
        "orders_db_gtid_wait_timeouts_total",
    ]
    declared = {
        m._name
        for module in (metrics, replica_metrics)
        for m in vars(module).values()
        if hasattr(m, "_name") and hasattr(m, "_type")
    }
    for name in names:
        assert f"`{name}`" in text, f"docs/operations.md does not describe {name}"
    for family in declared:
        assert any(n.startswith(family) for n in names), f"{family} is not in the docs list"
