"""What the rendered chart promises: security, probes, shutdown, secrets, scaling, isolation."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.chart import (
    CHART,
    KUBE_VERSIONS,
    SCENARIOS,
    Scenario,
    find,
    one,
    render,
    run,
    tool,
)

EXTERNAL = next(s for s in SCENARIOS if s.name == "external")
EXISTING = next(s for s in SCENARIOS if s.name == "existing-secrets")
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec of a rendering, by kind/name (Deployments, StatefulSets, Jobs, test Pods)."""
    specs = {}
    for doc in docs:
        if doc["kind"] == "Pod":
            specs[f"Pod/{doc['metadata']['name']}"] = doc["spec"]
        elif doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]["spec"]
    return specs


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_pod_meets_the_restricted_pod_security_standard(scenario: Scenario) -> None:
    for name, spec in pod_specs(render(scenario.args())).items():
        # The secrets Job is the one pod that talks to the Kubernetes API (create its Secret).
        assert spec["automountServiceAccountToken"] is (name == "Job/orders-secrets"), name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            where = f"{name}/{container['name']}"
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["runAsNonRoot"] is True, where
            assert "memory" in container["resources"]["limits"], where


def test_orders_containers_run_as_uid_10001_with_tmp_on_an_emptydir() -> None:
    for name, spec in pod_specs(render()).items():
        for container in spec.get("initContainers", []) + spec["containers"]:
            if not container["image"].startswith("orders-service:"):
                continue
            assert container["securityContext"]["runAsUser"] == 10001, name
            if name.startswith("Pod/"):
                continue  # the helm test pod writes nothing
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], name  # noqa: S108 (a mount path, not a file)


def test_api_probes_use_healthz_for_liveness_and_readyz_for_readiness() -> None:
    api = one(render(), "Deployment", "orders")["spec"]["template"]["spec"]["containers"][0]
    assert api["command"] == ["orders-service"]
    assert api["args"] == ["serve"]
    # The probes use the admin port (ORDERS_ADMIN_PORT), which the API's Service does not expose.
    assert api["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert api["ports"] == [
        {"name": "http", "containerPort": 5001, "protocol": "TCP"},
        {"name": "admin", "containerPort": 9102, "protocol": "TCP"},
    ]
    no_admin = one(render(("--set", "config.adminPort=0")), "Deployment", "orders")
    probe = no_admin["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
    assert probe == {"path": "/readyz", "port": "http"}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_grace_period_outlasts_prestop_drain_and_gunicorn_shutdown(kube_version: str) -> None:
    spec = one(render((), kube_version), "Deployment", "orders")["spec"]["template"]["spec"]
    pre_stop = spec["containers"][0]["lifecycle"]["preStop"]
    # The sleep action needs no binary in the image; Kubernetes before 1.30 lacks it.
    sleep = (
        pre_stop["sleep"]["seconds"] if "sleep" in pre_stop else int(pre_stop["exec"]["command"][1])
    )
    config = VALUES["config"]
    assert sleep == VALUES["preStopSleepSeconds"]
    assert spec["terminationGracePeriodSeconds"] > (
        sleep + config["shutdownDelay"] + config["gracefulTimeout"]
    )
    assert ("sleep" in pre_stop) == (kube_version >= "1.30")


def test_a_grace_period_too_short_for_the_drain_is_refused(helm: str) -> None:
    result = run(
        [helm, "template", "orders", str(CHART), "--set", "terminationGracePeriodSeconds=20"]
    )
    assert result.returncode != 0
    assert "must exceed" in result.stderr


def test_passwords_reach_pods_only_through_secret_key_refs() -> None:
    docs = render()
    configmap = one(docs, "ConfigMap", "orders")["data"]
    assert not any("PASSWORD" in key or "URL" in key for key in configmap)
    # No Secret with a password is rendered: the secrets Job creates `orders` in the cluster and
    # generates each key the values leave empty (all of them, by default).
    assert find(docs, "Secret") == []
    job = one(docs, "Job", "orders-secrets")["spec"]["template"]["spec"]["containers"][0]
    assert set(env_of(job)["GENERATE"].split()) == {
        "mysql-root-password",
        "mysql-api-password",
        "mysql-invalidator-password",
        "mysql-migrate-password",
        "redis-password",
        "redis-api-password",
        "redis-invalidator-password",
    }
    # One database and Redis user per role: the URL names the user, the Secret holds its password.
    for name, role, redis_role in (
        ("orders", "api", "api"),
        ("orders-invalidator", "invalidator", "invalidator"),
    ):
        pod = one(docs, "Deployment", name)["spec"]["template"]["spec"]
        for container, db_role, cache_role in (
            (pod["containers"][0], role, redis_role),
            (pod["initContainers"][0], "migrate", "api"),
        ):
            env = env_of(container)
            assert env["ORDERS_DATABASE_URL"] == (
                f"mysql://orders_{db_role}@orders-mysql-primary:3306/orders"
            )
            assert (
                env["ORDERS_REDIS_URL"]
                == f"redis://orders_{cache_role}@orders-redis-primary:6379/0"
            )
            assert env["ORDERS_DATABASE_PASSWORD"] == {
                "secretKeyRef": {"name": "orders", "key": f"mysql-{db_role}-password"}
            }
            assert env["ORDERS_REDIS_PASSWORD"] == {
                "secretKeyRef": {"name": "orders", "key": f"redis-{cache_role}-password"}
            }


def test_existing_secrets_replace_the_generated_one() -> None:
    docs = render(EXISTING.args())
    assert find(docs, "Secret") == []
    # Nothing to generate; the mysql-users Job reads the user's own Secret.
    assert [j["metadata"]["name"] for j in find(docs, "Job")] == ["orders-mysql-users"]
    api = one(docs, "Deployment", "orders")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(api)["ORDERS_DATABASE_PASSWORD"]["secretKeyRef"]["name"] == "orders-db"
    assert env_of(api)["ORDERS_REDIS_PASSWORD"]["secretKeyRef"]["name"] == "orders-cache"
    mysql = one(docs, "StatefulSet", "orders-mysql")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(mysql)["MYSQL_ROOT_PASSWORD"] == {
        "secretKeyRef": {"name": "orders-db", "key": "mysql-root-password"}
    }


def test_external_mysql_and_redis_drop_the_statefulsets_and_their_policies() -> None:
    docs = render(EXTERNAL.args())
    assert find(docs, "StatefulSet") == []
    assert {p["metadata"]["name"] for p in find(docs, "NetworkPolicy")} == {
        "orders-default-deny",
        "orders-api",
        "orders-invalidator",
        "orders-inspector",
        "orders-secrets",
        "orders-test",
    }
    api = one(docs, "Deployment", "orders")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(api)
    assert env["ORDERS_DATABASE_URL"] == "mysql://orders@mysql.example.internal:3306/orders"
    assert env["ORDERS_REDIS_URL"] == "redis://redis.example.internal:6379/0"
    assert env["ORDERS_DATABASE_PASSWORD"]["secretKeyRef"]["key"] == "mysql-password"


def test_given_passwords_reach_the_secrets_job_and_only_the_rest_is_generated() -> None:
    docs = render(("--set-string", "mysql.auth.apiPassword=fixed"))
    given = one(docs, "Secret", "orders-given")
    assert given["data"] == {"mysql-api-password": "Zml4ZWQ="}  # base64 of "fixed"
    assert given["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == (
        "before-hook-creation,hook-succeeded"
    )
    job = one(docs, "Job", "orders-secrets")["spec"]["template"]["spec"]
    assert "mysql-api-password" not in env_of(job["containers"][0])["GENERATE"].split()
    assert job["volumes"] == [{"name": "given", "secret": {"secretName": "orders-given"}}]


def test_config_and_secret_changes_roll_the_pods() -> None:
    def annotations(*args: str) -> dict[str, str]:
        deployment = one(render(args), "Deployment", "orders")
        return deployment["spec"]["template"]["metadata"]["annotations"]

    base = annotations()
    assert base == annotations()  # stable: generated passwords do not change the checksum
    assert annotations("--set", "config.cacheTtl=60")["checksum/config"] != base["checksum/config"]
    changed = annotations("--set-string", "mysql.auth.apiPassword=new")
    assert changed["checksum/secret"] != base["checksum/secret"]


def test_pdb_exists_only_when_more_than_one_replica_can_run() -> None:
    assert find(render(("--set", "replicaCount=1")), "PodDisruptionBudget") == []
    assert len(find(render(("--set", "replicaCount=2")), "PodDisruptionBudget")) == 1
    hpa_one = render(("--set", "replicaCount=1", "--set", "autoscaling.enabled=true"))
    assert len(find(hpa_one, "PodDisruptionBudget")) == 1


def test_hpa_owns_the_replica_count_when_enabled() -> None:
    docs = render(("--set", "autoscaling.enabled=true"))
    hpa = one(docs, "HorizontalPodAutoscaler", "orders")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "orders",
    }
    assert "replicas" not in one(docs, "Deployment", "orders")["spec"]


def test_invalidator_is_a_single_recreated_replica_with_its_metrics_port() -> None:
    deployment = one(render(), "Deployment", "orders-invalidator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["invalidate"]
    assert container["ports"][0]["containerPort"] == 9102
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_seed_job_is_opt_in_migrates_first_and_reads_no_configmap() -> None:
    """Seeding is a post-install/post-upgrade hook, off by default; it migrates in an init
    container and carries its settings inline (a hook never reads an older ConfigMap)."""
    assert {j["metadata"]["name"] for j in find(render(), "Job")} == {
        "orders-secrets",
        "orders-mysql-users",
    }
    job = one(render(("--set", "seed.enabled=true")), "Job", "orders-seed")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    spec = job["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["migrate"]
    assert spec["containers"][0]["args"] == [
        "seed",
        "--orders",
        "1000",
        "--seed",
        "42",
        "--if-empty",
    ]
    for container in [*spec["initContainers"], *spec["containers"]]:
        assert not any("configMapRef" in source for source in container.get("envFrom", []))
        assert env_of(container)["ORDERS_CACHE_PREFIX"] == "orders"


def test_mysql_has_the_binlog_the_invalidator_needs_and_a_patient_startup_probe() -> None:
    docs = render()
    statefulset = one(docs, "StatefulSet", "orders-mysql")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"mysql:{VALUES['mysql']['image']['tag']}"
    for flag in (
        "--binlog-format=ROW",
        "--binlog-row-image=FULL",
        "--binlog-row-metadata=FULL",
        "--log-bin-trust-function-creators=1",
        "--server-id=1",
    ):
        assert flag in container["args"]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
    assert statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    headless = one(docs, "Service", "orders-mysql")
    assert headless["spec"]["clusterIP"] == "None"
    initdb = one(docs, "ConfigMap", "orders-mysql-initdb")["data"]["10-orders-users.sh"]
    assert "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.*" in initdb
    assert '"$ORDERS_API_PASSWORD"' in initdb  # the passwords come from the env, not the ConfigMap


def test_redis_evicts_only_keys_with_a_ttl_and_keeps_its_password_off_the_command_line() -> None:
    docs = render()
    conf = one(docs, "ConfigMap", "orders-redis")["data"]["redis.conf"]
    assert "maxmemory-policy volatile-lru" in conf
    assert "maxmemory 256mb" in conf
    container = one(docs, "StatefulSet", "orders-redis")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert container["image"] == f"redis:{VALUES['redis']['image']['tag']}"
    assert "--aclfile /run/redis/users.acl" in container["command"][2]
    assert '"$REDIS_PASSWORD"' in container["command"][2]
    assert env_of(container)["REDIS_PASSWORD"]["secretKeyRef"]["key"] == "redis-password"
    persistent = one(
        render(("--set", "redis.persistence.enabled=true")), "StatefulSet", "orders-redis"
    )
    assert persistent["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]


def test_database_policies_admit_only_the_release_components_that_use_them() -> None:
    docs = render(("--set", "seed.enabled=true"))
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    for name in ("orders-mysql", "orders-redis"):
        spec = policies[name]
        component = name.removeprefix("orders-")
        assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        (rule,) = spec["ingress"]
        (peer,) = rule["from"]
        allowed = set(peer["podSelector"]["matchExpressions"][0]["values"])
        assert allowed == {"api", "invalidator", "inspector", "seed", "mysql-users"}
    components = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"][
            "app.kubernetes.io/component"
        ]
        for d in docs
        if d["kind"] in {"Deployment", "Job"}
    }
    assert components == {
        "orders": "api",
        "orders-invalidator": "invalidator",
        "orders-inspector": "inspector",
        "orders-seed": "seed",
        "orders-secrets": "secrets",
        "orders-mysql-users": "mysql-users",
    }
    assert find(render(("--set", "networkPolicy.enabled=false")), "NetworkPolicy") == []


def test_image_tag_defaults_to_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    api = one(render(), "Deployment", "orders")["spec"]["template"]["spec"]["containers"][0]
    assert api["image"] == f"ghcr.io/orders-service/orders-service:{chart['appVersion']}"
    tagged = one(render(("--set", "image.tag=abc")), "Deployment", "orders")
    assert (
        tagged["spec"]["template"]["spec"]["containers"][0]["image"]
        == "ghcr.io/orders-service/orders-service:abc"
    )


def test_every_resource_carries_the_recommended_labels() -> None:
    for doc in render(next(s for s in SCENARIOS if s.name == "monitoring").args()):
        labels = doc["metadata"]["labels"]
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by",
        ):
            assert key in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks {key}"


def test_helm_test_pod_fetches_page_one_through_the_service() -> None:
    pod = one(render(), "Pod", "orders-test-page")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"][1:] == [
        "false",  # auth off: a 200 page is expected, not a 401 challenge
        "http://orders.orders.svc:5001/orders/1",
        "false",  # not seeded: an empty page 1 is fine
        "http://orders-inspector.orders.svc:9103/metrics",  # the inspector answers
    ]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("replicaCount=many", "want integer"),
        ("unknownKey=1", "additional properties 'unknownKey' not allowed"),
        ("config.port=70000", "maximum"),
        ("mysql.enabled=false", "allOf"),
        ("extraEnv.ORDERS_DATABASE_PASSWORD=x", "extraEnv"),
        ("extraEnv.HOME=/", "does not match pattern"),
        ("mysql.users.api=bob';DROP", "mysql/users/api"),
        ("invalidator.replicas=3", "maximum"),
    ],
)
def test_schema_refuses_bad_values(helm: str, flag: str, message: str) -> None:
    result = run([helm, "template", "orders", str(CHART), "--set", flag])
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_notes_tell_how_to_port_forward_to_5001() -> None:
    result = run(
        [tool("helm"), "install", "orders", str(CHART), "--dry-run=client", "--namespace", "orders"]
    )
    assert result.returncode == 0, result.stderr
    assert "port-forward service/orders 5001:5001" in result.stdout
