"""ServiceMonitors and the PrometheusRule match the prometheus-operator CRD schemas."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, NODE_MODULES, SCENARIOS, find, render

HERE = Path(__file__).parent
MONITORING = next(s for s in SCENARIOS if s.name == "monitoring")
MODELS = NODE_MODULES / "@kubernetes-models" / "prometheus-operator"


def validate(node: str, documents: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(HERE / "validate_crds.mjs"), str(MODELS)],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def crd_documents(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return find(docs, "ServiceMonitor") + find(docs, "PrometheusRule")


@pytest.mark.parametrize(
    "values",
    [MONITORING.args(), ["-f", str(CHART / "values-prod.yaml")]],
    ids=["monitoring", "prod"],
)
def test_monitoring_resources_match_the_operator_schemas(node: str, values: list[str]) -> None:
    documents = crd_documents(render(values))
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["PrometheusRule", "ServiceMonitor", "ServiceMonitor", "ServiceMonitor"]
    result = validate(node, documents)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("VALID") == 4


def test_the_schema_check_rejects_a_misspelt_field(node: str) -> None:
    """Guards the test above: the models really validate, they do not accept anything."""
    monitor = find(render(MONITORING.args()), "ServiceMonitor")[0]
    monitor["spec"]["endpoints"][0]["interval"] = 30
    result = validate(node, [monitor])
    assert result.returncode == 1
    assert "INVALID" in result.stdout


def test_prometheus_rule_is_the_rule_file_verbatim() -> None:
    """One source for the alerts: the PrometheusRule carries rules/orders-rules.yaml's groups."""
    rule = find(render(MONITORING.args()), "PrometheusRule")[0]
    source = yaml.safe_load((CHART / "rules" / "orders-rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]


def test_service_monitors_scrape_the_named_metrics_ports() -> None:
    docs = render(MONITORING.args())
    ports = {
        m["metadata"]["name"]: (
            m["spec"]["endpoints"][0]["port"],
            m["spec"]["endpoints"][0]["path"],
        )
        for m in find(docs, "ServiceMonitor")
    }
    assert ports == {
        "orders-api": ("admin", "/metrics"),
        "orders-invalidator": ("metrics", "/metrics"),
        "orders-inspector": ("metrics", "/metrics"),
    }
    service_ports = {
        s["metadata"]["name"]: {p["name"] for p in s["spec"]["ports"]}
        for s in find(docs, "Service")
    }
    # /metrics is on the admin port: a headless metrics Service, never the API's own Service.
    assert service_ports["orders"] == {"http"}
    assert "admin" in service_ports["orders-metrics"]
    assert "metrics" in service_ports["orders-invalidator"]
    assert "metrics" in service_ports["orders-inspector"]


def test_dashboards_become_sidecar_configmaps_one_per_file() -> None:
    docs = render(MONITORING.args())
    dashboards = [
        c for c in find(docs, "ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]
    ]
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(key for c in dashboards for key in c["data"]) == files
    for configmap in dashboards:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        for name, body in configmap["data"].items():
            assert json.loads(body) == json.loads((CHART / "dashboards" / name).read_text())
