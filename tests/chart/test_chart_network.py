"""Issue 12, a closed network: every pod of the release is under a default-deny policy for ingress
and egress, and each flow a component needs is allowed, nothing else.

The policies are evaluated here as the API server's NetworkPolicy semantics define them (a flow is
allowed when any policy selecting the pod allows it; a pod selected by a policy of a type is
isolated for that type), for pod labels and ports taken from the same rendering.
"""

from __future__ import annotations

import pytest

from tests.support.chart import render
from tests.support.network_policy import (
    DNS_POD,
    ELSEWHERE,
    KUBE_SYSTEM,
    MONITORING_NS,
    NAMESPACE,
    Network,
    selects,
)


@pytest.fixture(scope="module")
def net() -> Network:
    return Network(render(("--set", "seed.enabled=true")))


def test_every_pod_is_under_a_default_deny_for_ingress_and_egress(net: Network) -> None:
    """Before: only MySQL and Redis had a policy, ingress only; nothing limited egress."""
    assert set(net.pods) == {
        "api",
        "invalidator",
        "inspector",
        "seed",
        "secrets",
        "mysql",
        "mysql-users",
        "redis",
        "test",
    }
    deny_all = [p for p in net.policies if "ingress" not in p and "egress" not in p]
    assert len(deny_all) == 1
    assert sorted(deny_all[0]["policyTypes"]) == ["Egress", "Ingress"]
    for component, labels in net.pods.items():
        assert selects(deny_all[0]["podSelector"], labels), component
        assert net.isolated(component, "Ingress")
        assert net.isolated(component, "Egress")


@pytest.mark.parametrize("client", ["api", "invalidator", "seed"])
def test_apps_reach_dns_mysql_and_redis_and_nothing_else(net: Network, client: str) -> None:
    dns = (KUBE_SYSTEM, DNS_POD)
    assert net.allowed(client, "Egress", 53, "UDP", dns)
    assert net.allowed(client, "Egress", 53, "TCP", dns)
    assert net.allowed(client, "Egress", 3306, "TCP", net.pod("mysql"))
    assert net.allowed("mysql", "Ingress", 3306, "TCP", net.pod(client))
    if client != "seed":
        assert net.allowed(client, "Egress", 6379, "TCP", net.pod("redis"))
        assert net.allowed("redis", "Ingress", 6379, "TCP", net.pod(client))
    # Nothing else: not the internet, not the API, not a DNS server elsewhere.
    assert not net.allowed(client, "Egress", 443, "TCP", (ELSEWHERE, None))
    assert not net.allowed(client, "Egress", 53, "UDP", (ELSEWHERE, {"app": "dns"}))
    assert not net.allowed(client, "Egress", 5001, "TCP", net.pod("api"))


def test_databases_answer_only_the_apps_and_open_nothing(net: Network) -> None:
    for database, port in (("mysql", 3306), ("redis", 6379)):
        assert not net.allowed(database, "Ingress", port, "TCP", net.pod("test"))
        assert not net.allowed(database, "Ingress", port, "TCP", (NAMESPACE, {"app": "other"}))
        assert not net.allowed(database, "Egress", 53, "UDP", (KUBE_SYSTEM, DNS_POD))
        assert not net.allowed(database, "Egress", 443, "TCP", (ELSEWHERE, None))


def test_the_api_port_is_open_to_anyone_by_default_and_metrics_only_to_monitoring(
    net: Network,
) -> None:
    anyone = (ELSEWHERE, {"app": "browser"})
    assert net.allowed("api", "Ingress", 5001, "TCP", anyone)
    assert net.allowed("api", "Ingress", 5001, "TCP", (None, None))  # outside the cluster
    prometheus = (MONITORING_NS, {"app.kubernetes.io/name": "prometheus"})
    assert net.allowed("api", "Ingress", 9102, "TCP", prometheus)
    assert not net.allowed("api", "Ingress", 9102, "TCP", anyone)
    assert net.allowed("invalidator", "Ingress", 9102, "TCP", prometheus)
    assert not net.allowed("invalidator", "Ingress", 9102, "TCP", anyone)
    assert not net.allowed("invalidator", "Ingress", 5001, "TCP", anyone)
    assert not net.allowed("seed", "Ingress", 5001, "TCP", anyone)
    # The helm test pod reaches the API and nothing else.
    assert net.allowed("test", "Egress", 5001, "TCP", net.pod("api"))
    assert not net.allowed("test", "Egress", 3306, "TCP", net.pod("mysql"))


def test_api_ingress_can_be_limited_to_a_namespace() -> None:
    restricted = Network(
        render(
            (
                "--set",
                "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.team=edge",
            )
        )
    )
    assert restricted.allowed("api", "Ingress", 5001, "TCP", ({"team": "edge"}, {"a": "b"}))
    assert not restricted.allowed("api", "Ingress", 5001, "TCP", (ELSEWHERE, {"a": "b"}))
    assert restricted.allowed("api", "Ingress", 5001, "TCP", restricted.pod("test"))


def test_the_otlp_collector_is_reachable_only_when_configured() -> None:
    collector = ({"kubernetes.io/metadata.name": "observability"}, {"app": "otel-collector"})
    assert not Network(render()).allowed("api", "Egress", 4318, "TCP", collector)
    with_otlp = Network(
        render(
            (
                "--set",
                "networkPolicy.otlp.port=4318",
                "--set",
                "networkPolicy.otlp.to[0].namespaceSelector.matchLabels"
                ".kubernetes\\.io/metadata\\.name=observability",
            )
        )
    )
    assert with_otlp.allowed("api", "Egress", 4318, "TCP", collector)
    assert with_otlp.allowed("invalidator", "Egress", 4318, "TCP", collector)
    assert not with_otlp.allowed("api", "Egress", 4317, "TCP", collector)
    from_env = Network(
        render(
            (
                "--set",
                "extraEnv.OTEL_EXPORTER_OTLP_ENDPOINT=http://collector.obs:4317",
            )
        )
    )
    assert from_env.allowed("invalidator", "Egress", 4317, "TCP", collector)
    assert not from_env.allowed("invalidator", "Egress", 4318, "TCP", collector)


def test_external_databases_get_egress_on_their_ports() -> None:
    external = Network(
        render(
            (
                "--set",
                "mysql.enabled=false",
                "--set",
                "externalDatabase.host=db.example",
                "--set",
                "externalDatabase.port=3307",
                "--set",
                "redis.enabled=false",
                "--set",
                "externalRedis.host=cache.example",
                "--set",
                "networkPolicy.externalTo[0].ipBlock.cidr=10.0.0.0/8",
            )
        )
    )
    assert external.allowed("api", "Egress", 3307, "TCP", (None, None))
    assert external.allowed("api", "Egress", 6379, "TCP", (None, None))
    assert not external.allowed("api", "Egress", 3306, "TCP", (None, None))


def test_with_auth_on_the_api_reaches_the_identity_providers_key_set_and_nothing_else() -> None:
    """auth.jwksUrl's port (443 for https unless it names one) opens for the API only."""
    anywhere = ({"kubernetes.io/metadata.name": "elsewhere"}, {"app": "keycloak"})
    assert not Network(render()).allowed("api", "Egress", 443, "TCP", anywhere)
    issuer = ("--set", "auth.issuer=https://idp.example.com", "--set", "auth.audience=orders")
    on = Network(render((*issuer, "--set", "auth.jwksUrl=https://idp.example.com/certs")))
    assert on.allowed("api", "Egress", 443, "TCP", anywhere)
    assert not on.allowed("invalidator", "Egress", 443, "TCP", anywhere)
    own_port = Network(
        render(
            (
                *issuer,
                "--set",
                "auth.jwksUrl=http://keycloak.idp:8080/certs",
                "--set",
                "auth.jwksAllowHttp=true",
            )
        )
    )
    assert own_port.allowed("api", "Egress", 8080, "TCP", anywhere)
    assert not own_port.allowed("api", "Egress", 443, "TCP", anywhere)
