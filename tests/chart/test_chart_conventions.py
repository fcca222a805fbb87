"""Managed databases and the conventions chart users expect: TLS, extra env and volumes, security
contexts (OpenShift), a ServiceAccount per component, Ingress and HTTPRoute, the invalidator's
liveness and standby, the admin port."""

from __future__ import annotations

from typing import Any

from tests.support.chart import SCENARIOS, find, one, render

MANAGED = next(s for s in SCENARIOS if s.name == "managed-tls-ingress")
ORDERS_PODS = ("orders", "orders-invalidator")


def pod(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return dict(one(docs, kind, name)["spec"]["template"]["spec"])


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def orders_containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for kind, name in (("Deployment", "orders"), ("Deployment", "orders-invalidator")):
        spec = pod(docs, kind, name)
        found += [*spec.get("initContainers", []), *spec["containers"]]
    job = find(docs, "Job", "orders-seed")
    if job:
        spec = job[0]["spec"]["template"]["spec"]
        found += [*spec["initContainers"], *spec["containers"]]
    return found


def test_tls_to_managed_databases_verifies_the_server_with_the_mounted_ca() -> None:
    docs = render(MANAGED.args())
    for container in orders_containers(docs):
        variables = env(container)
        assert variables["ORDERS_DATABASE_URL"].endswith(
            "@db.example.internal:3306/orders"
            "?ssl_ca=/etc/orders/tls/mysql/ca.crt&ssl_verify_identity=true"
        ), container["name"]
        assert variables["ORDERS_REDIS_URL"] == (
            "rediss://cache.example.internal:6379/0?ssl_ca_certs=/etc/orders/tls/redis/ca.crt"
        )
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["mysql-ca"] == "/etc/orders/tls/mysql"
        assert mounts["redis-ca"] == "/etc/orders/tls/redis"
        assert {"secretRef": {"name": "orders-extra"}} in container["envFrom"]
    volumes = {v["name"]: v for v in pod(docs, "Deployment", "orders")["volumes"]}
    assert volumes["mysql-ca"]["secret"] == {
        "secretName": "db-ca",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }


def test_extra_env_vars_take_value_from_and_extra_volumes_are_mounted() -> None:
    docs = render(
        (
            "--set",
            "extraEnvVars[0].name=ORDERS_CACHE_TIMEOUT",
            "--set",
            "extraEnvVars[0].value=0.2",
            "--set",
            "extraEnvVars[1].name=MANAGED_TOKEN",
            "--set",
            "extraEnvVars[1].valueFrom.secretKeyRef.name=cloud",
            "--set",
            "extraEnvVars[1].valueFrom.secretKeyRef.key=token",
            "--set",
            "extraVolumes[0].name=bundle",
            "--set",
            "extraVolumes[0].configMap.name=ca-bundle",
            "--set",
            "extraVolumeMounts[0].name=bundle",
            "--set",
            "extraVolumeMounts[0].mountPath=/etc/ssl/bundle",
        )
    )
    for container in orders_containers(docs):
        variables = env(container)
        assert variables["ORDERS_CACHE_TIMEOUT"] == "0.2"
        assert variables["MANAGED_TOKEN"] == {"secretKeyRef": {"name": "cloud", "key": "token"}}
        assert {"name": "bundle", "mountPath": "/etc/ssl/bundle"} in container["volumeMounts"]
    assert {"name": "bundle", "configMap": {"name": "ca-bundle"}} in pod(
        docs, "Deployment", "orders"
    )["volumes"]


def test_openshift_leaves_the_uids_to_the_platform() -> None:
    docs = render(("--set", "openshift=true", "--set", "seed.enabled=true"))
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job", "Pod"}:
            continue
        spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
        contexts = [spec["securityContext"]] + [
            c["securityContext"] for c in [*spec.get("initContainers", []), *spec["containers"]]
        ]
        for context in contexts:
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(context), doc["metadata"]
            assert context.get("runAsNonRoot", True) is True
    default = pod(render(), "Deployment", "orders")
    assert default["securityContext"]["runAsUser"] == 10001


def test_each_component_has_its_own_service_account_without_a_token() -> None:
    docs = render(("--set", "seed.enabled=true"))
    accounts = {a["metadata"]["name"]: a for a in find(docs, "ServiceAccount")}
    assert set(accounts) == {
        "orders",
        "orders-invalidator",
        "orders-inspector",
        "orders-seed",
        "orders-secrets",
        "orders-mysql",
        "orders-mysql-users",
        "orders-redis",
    }
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    used = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["serviceAccountName"]
        for doc in docs
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}
    }
    assert used == {
        "orders": "orders",
        "orders-invalidator": "orders-invalidator",
        "orders-inspector": "orders-inspector",
        "orders-secrets": "orders-secrets",
        "orders-mysql-users": "orders-mysql-users",
        "orders-seed": "orders-seed",
        "orders-mysql": "orders-mysql",
        "orders-redis": "orders-redis",
    }


def test_ingress_and_httproute_send_orders_to_the_api_service() -> None:
    docs = render(MANAGED.args())
    ingress = one(docs, "Ingress", "orders")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "orders.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": "orders",
        "port": {"name": "http"},
    }
    route = one(
        render(("--set", "httpRoute.enabled=true", "--set", "httpRoute.parentRefs[0].name=gw")),
        "HTTPRoute",
        "orders",
    )
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "gw"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "orders", "port": 5001}]
    assert find(render(), "Ingress") == []
    assert find(render(), "HTTPRoute") == []


def test_invalidator_liveness_follows_the_stall_and_two_replicas_get_a_pdb() -> None:
    docs = render(("--set", "invalidator.stallAfterSeconds=45"))
    spec = pod(docs, "Deployment", "orders-invalidator")
    container = spec["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert one(docs, "ConfigMap", "orders")["data"]["ORDERS_INVALIDATOR_STALL_AFTER"] == "45"
    assert find(docs, "PodDisruptionBudget", "orders-invalidator") == []
    # The startup probe outlasts the first MySQL contact's retries (migrations.waitTimeout).
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > 300
    pair = render(("--set", "invalidator.replicas=2"))
    deployment = one(pair, "Deployment", "orders-invalidator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert one(pair, "PodDisruptionBudget", "orders-invalidator")["spec"]["maxUnavailable"] == 1


def test_the_admin_port_is_off_the_api_service_and_on_a_headless_metrics_service() -> None:
    docs = render()
    assert one(docs, "ConfigMap", "orders")["data"]["ORDERS_ADMIN_PORT"] == "9102"
    api = one(docs, "Service", "orders")
    assert [p["targetPort"] for p in api["spec"]["ports"]] == ["http"]
    metrics = one(docs, "Service", "orders-metrics")
    assert metrics["spec"]["clusterIP"] == "None"
    assert [p["targetPort"] for p in metrics["spec"]["ports"]] == ["admin"]
    assert find(render(("--set", "config.adminPort=0")), "Service", "orders-metrics") == []
