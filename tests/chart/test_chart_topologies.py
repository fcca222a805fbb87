"""The chart's topologies (issues 19 and 20): what each form renders for the service and network.

The renderings themselves go through every generic chart test (tests/support/chart.py's
SCENARIOS: schema, kubernetes-validate, trivy); here, what each form must say: the URL the service
parses (with the service's own parser), the Sentinels' password, the replicas' URLs for the API
only, the ports the NetworkPolicies open, the eviction policy and MySQL's GTID flags.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from service.config.urls import database_url, redis_url
from tests.support.chart import (
    CHART,
    SCENARIOS,
    find,
    one,
    render,
    run,
    tool,
)

REPLICATION = next(s for s in SCENARIOS if s.name == "redis-replication")
SENTINEL = next(s for s in SCENARIOS if s.name == "external-sentinel-replicas")
CLUSTER = next(s for s in SCENARIOS if s.name == "external-cluster-tls")


def container(docs: list[dict[str, Any]], kind: str, name: str, index: int = 0) -> dict[str, Any]:
    return dict(one(docs, kind, name)["spec"]["template"]["spec"]["containers"][index])


def env(item: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in item["env"]}


def app_envs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        name: env(container(docs, "Deployment", name))
        for name in ("orders", "orders-invalidator", "orders-inspector")
    }


POLICIES = {"orders": "orders-api"}


def egress_ports(docs: list[dict[str, Any]], policy: str) -> set[int]:
    spec = one(docs, "NetworkPolicy", POLICIES.get(policy, policy))["spec"]
    return {p["port"] for rule in spec.get("egress", []) for p in rule.get("ports", [])}


def test_replication_gives_every_process_the_sentinels_and_their_password() -> None:
    docs = render(REPLICATION.args())
    for name, variables in app_envs(docs).items():
        parsed = redis_url(variables["ORDERS_REDIS_URL"])
        assert parsed.topology == "sentinel", name
        assert parsed.master_name == "orders"
        assert parsed.hosts == tuple(
            (f"orders-redis-{i}.orders-redis.orders.svc", 26379) for i in range(3)
        )
        secret = variables["ORDERS_REDIS_SENTINEL_PASSWORD"]["secretKeyRef"]
        assert secret == {"name": "orders", "key": "redis-sentinel-password", "optional": False}
    statefulset = one(docs, "StatefulSet", "orders-redis")["spec"]
    assert statefulset["replicas"] == 3
    names = [c["name"] for c in statefulset["template"]["spec"]["containers"]]
    assert names == ["redis", "sentinel"]
    # no Service that would spread clients over the primary and its read-only replicas
    assert find(docs, "Service", "orders-redis-primary") == []
    # a drain takes one node at a time: a Sentinel majority and a replica to promote remain
    assert one(docs, "PodDisruptionBudget", "orders-redis")["spec"]["maxUnavailable"] == 1
    assert find(render(), "PodDisruptionBudget", "orders-redis") == []
    headless = one(docs, "Service", "orders-redis")["spec"]
    assert headless["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["ports"]} == {6379, 26379}


def test_replication_keeps_an_append_only_file_and_evicts_only_keys_with_a_ttl() -> None:
    docs = render(REPLICATION.args())
    config = one(docs, "ConfigMap", "orders-redis")["data"]["redis.conf"]
    assert "appendonly yes" in config
    assert "maxmemory-policy volatile-lru" in config
    standalone = one(render(), "ConfigMap", "orders-redis")["data"]["redis.conf"]
    assert "appendonly no" in standalone  # as in 0.2.0: an empty cache after a restart is safe


def test_the_sentinel_password_is_generated_in_the_cluster_never_rendered() -> None:
    docs = render(REPLICATION.args())
    job = one(docs, "Job", "orders-secrets")["spec"]["template"]["spec"]["containers"][0]
    generated = next(e["value"] for e in job["env"] if e["name"] == "GENERATE")
    assert "redis-sentinel-password" in generated.split()


def test_redis_nodes_talk_to_each_other_on_the_redis_and_sentinel_ports_only() -> None:
    docs = render(REPLICATION.args())
    policy = one(docs, "NetworkPolicy", "orders-redis")["spec"]
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == {6379, 26379}
    assert egress_ports(docs, "orders-redis") == {53, 6379, 26379}
    assert egress_ports(render(), "orders-redis") == set()  # standalone opens nothing
    for name in ("orders", "orders-invalidator", "orders-inspector"):
        assert {6379, 26379} <= egress_ports(docs, name)


def test_an_external_sentinel_set_is_named_by_its_hosts_and_master() -> None:
    docs = render(SENTINEL.args())
    variables = app_envs(docs)["orders-invalidator"]
    parsed = redis_url(variables["ORDERS_REDIS_URL"])
    assert parsed.topology == "sentinel"
    assert parsed.master_name == "cache"
    assert parsed.hosts == (
        ("sentinel-0.example.internal", 26379),
        ("sentinel-1.example.internal", 26379),
        ("sentinel-2.example.internal", 26380),
    )
    secret = variables["ORDERS_REDIS_SENTINEL_PASSWORD"]["secretKeyRef"]
    # a Sentinel without a password: the key is absent and so is the variable
    assert secret == {"name": "orders", "key": "redis-sentinel-password", "optional": True}
    # Sentinels on 26379 and 26380, the primary they name on externalRedis.port
    assert {6379, 26379, 26380} <= egress_ports(docs, "orders-invalidator")


def test_an_external_cluster_is_reached_through_its_seed_nodes_over_tls() -> None:
    docs = render(CLUSTER.args())
    variables = app_envs(docs)["orders"]
    parsed = redis_url(variables["ORDERS_REDIS_URL"])
    assert parsed.topology == "cluster"
    assert parsed.tls
    assert parsed.username == "orders"
    assert parsed.hosts == (("clustercfg.cache.example.internal", 6379), ("10.0.0.12", 6380))
    assert "ssl_ca_certs=/etc/orders/tls/redis/ca.crt" in variables["ORDERS_REDIS_URL"]
    assert "ORDERS_REDIS_SENTINEL_PASSWORD" not in variables
    ports = egress_ports(docs, "orders")
    assert {6379, 6380} <= ports
    # Clients never speak the cluster bus (port + 10000): only the nodes do, outside the release.
    assert not ports & {16379, 16380}


def test_replica_urls_reach_the_api_only_with_the_primarys_tls() -> None:
    docs = render(CLUSTER.args())
    envs = app_envs(docs)
    (url,) = envs["orders"]["ORDERS_DATABASE_REPLICA_URLS"].split(",")
    address, _, query = url.partition("?")
    assert query == "ssl_ca=/etc/orders/tls/mysql/ca.crt&ssl_verify_identity=true"
    parsed = database_url(address)  # (the CA file exists only in the pod)
    assert (parsed.host, parsed.port, parsed.user) == (
        "db-replica-1.example.internal",
        3306,
        "orders",
    )
    # the API's password (this scenario gives the replicas none of their own)
    assert (
        envs["orders"]["ORDERS_DATABASE_REPLICA_PASSWORD"]["secretKeyRef"]["key"]
        == (envs["orders"]["ORDERS_DATABASE_PASSWORD"]["secretKeyRef"]["key"])
    )
    for name in ("orders-invalidator", "orders-inspector"):  # they read the primary only
        assert "ORDERS_DATABASE_REPLICA_URLS" not in envs[name]


def test_replica_hosts_take_their_own_port_and_password() -> None:
    docs = render(SENTINEL.args())
    api = app_envs(docs)["orders"]
    hosts = [database_url(u) for u in api["ORDERS_DATABASE_REPLICA_URLS"].split(",")]
    assert [(h.host, h.port) for h in hosts] == [
        ("db-replica-1.example.internal", 3306),
        ("db-replica-2.example.internal", 3307),
    ]
    assert api["ORDERS_DATABASE_REPLICA_PASSWORD"]["secretKeyRef"]["key"] == (
        "mysql-replica-password"
    )
    assert {3306, 3307} <= egress_ports(docs, "orders")
    assert 3307 not in egress_ports(docs, "orders-invalidator")  # the API alone reads replicas


def test_the_in_release_mysql_keeps_gtids_on_so_replicas_can_be_added() -> None:
    args = container(render(), "StatefulSet", "orders-mysql")["args"]
    assert {"--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--log-replica-updates=ON"} <= set(
        args
    )
    assert "--log-bin=mysql-bin" in args
    off = container(render(["--set", "mysql.gtid.enabled=false"]), "StatefulSet", "orders-mysql")
    assert not [a for a in off["args"] if "gtid" in a]


@pytest.mark.parametrize(
    ("sets", "complaint"),
    [
        (["redis.maxmemoryPolicy=allkeys-lru"], "maxmemoryPolicy"),
        (["redis.architecture=replication", "redis.replication.nodes=2"], "nodes"),
        (["redis.architecture=sentinel"], "architecture"),
        (  # one claim cannot hold three nodes' data
            [
                "redis.architecture=replication",
                "redis.persistence.enabled=true",
                "redis.persistence.existingClaim=cache-data",
            ],
            "existingClaim",
        ),
        (
            ["redis.enabled=false", "externalRedis.topology=sentinel", "externalRedis.password=x"],
            "hosts",
        ),
        (
            [
                "redis.enabled=false",
                "externalRedis.topology=cluster",
                "externalRedis.hosts[0].port=6379",
            ],
            "host",
        ),
    ],
)
def test_the_schema_refuses_a_form_that_could_not_work(sets: list[str], complaint: str) -> None:
    args = [arg for item in sets for arg in ("--set", item)]
    result = run([tool("helm"), "template", "orders", str(CHART), *args])
    assert result.returncode != 0
    assert complaint in result.stderr


def test_the_sentinels_allow_the_apps_users_discovery_only_as_grants_prints_it() -> None:
    from service.orders.roles import sentinel_acl

    script = (CHART / "files" / "redis-node.sh").read_text()
    (rules,) = re.findall(r'^orders_sentinel_rules="([^"]*)"', script, flags=re.MULTILINE)
    assert ["reset", "on", *rules.split()] == sentinel_acl("orders_api")
