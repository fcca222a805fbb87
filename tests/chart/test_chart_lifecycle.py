"""Issue 11: what a real cluster does to the chart on day one, pinned at the render level.

Each test names the defect it guards against: an image that exists, clients that find MySQL and
Redis before they are Ready, database pods that survive app-only upgrades, passwords that stay put.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.chart import CHART, find, one, render, run, tool

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
DIGEST = "sha256:" + "ab" * 32


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def orders_images(docs: list[dict[str, Any]]) -> set[str]:
    return {
        c["image"]
        for d in docs
        if d["kind"] in {"Deployment", "Job"}
        for c in containers(d)
        if c["image"].split("@")[0].split(":")[0].endswith("orders-service")
    }


# ---- an image that exists -------------------------------------------------------------------


def test_default_image_is_the_published_one_on_ghcr() -> None:
    """Before: `orders-service:0.1.0`, an image no registry has; every pod was ErrImagePull."""
    assert orders_images(render()) == {
        f"ghcr.io/orders-service/orders-service:{CHART_META['appVersion']}"
    }


def test_a_digest_wins_over_the_tag() -> None:
    docs = render(("--set", "image.tag=1.2.3", "--set", f"image.digest={DIGEST}"))
    assert orders_images(docs) == {f"ghcr.io/orders-service/orders-service@{DIGEST}"}


def test_a_local_image_needs_no_registry() -> None:
    docs = render(("--set", "image.registry=", "--set", "image.repository=orders-service"))
    assert orders_images(docs) == {f"orders-service:{CHART_META['appVersion']}"}


@pytest.mark.parametrize("component", ["mysql", "redis"])
def test_database_images_pin_by_digest(component: str) -> None:
    docs = render(("--set", f"{component}.image.digest={DIGEST}"))
    statefulset = one(docs, "StatefulSet", f"orders-{component}")
    assert containers(statefulset)[0]["image"] == f"{component}@{DIGEST}"


def test_a_malformed_digest_is_refused(helm: str) -> None:
    result = run([helm, "template", "orders", str(CHART), "--set", "image.digest=latest"])
    assert result.returncode != 0
    assert "digest" in result.stderr


# ---- start-up order -------------------------------------------------------------------------


@pytest.mark.parametrize(("component", "port"), [("mysql", 3306), ("redis", 6379)])
def test_apps_reach_the_databases_through_a_clusterip_service(component: str, port: int) -> None:
    """Before: the apps used the headless Service: no DNS record until the pod is Ready."""
    docs = render()
    headless = one(docs, "Service", f"orders-{component}")
    assert headless["spec"]["clusterIP"] == "None"
    assert (
        one(docs, "StatefulSet", f"orders-{component}")["spec"]["serviceName"]
        == (headless["metadata"]["name"])
    )
    primary = one(docs, "Service", f"orders-{component}-primary")
    assert primary["spec"].get("clusterIP") != "None"
    assert primary["spec"]["type"] == "ClusterIP"
    assert primary["spec"]["selector"] == headless["spec"]["selector"]
    assert primary["spec"]["ports"][0]["port"] == port
    config = one(docs, "ConfigMap", "orders")["data"]
    everything = yaml.safe_dump_all(docs)
    url_host = f"orders-{component}-primary:{port}"
    assert url_host in everything
    assert f"@orders-{component}:" not in everything
    assert f"//orders-{component}:" not in everything
    assert f"orders-{component}:" not in "".join(str(v) for v in config.values())


# ---- upgrades that touch only what changed -------------------------------------------------


def db_pod_templates(*args: str) -> dict[str, str]:
    docs = render(args)
    return {
        name: yaml.safe_dump(one(docs, "StatefulSet", name)["spec"]["template"])
        for name in ("orders-mysql", "orders-redis")
    }


def test_an_app_only_upgrade_leaves_the_database_pod_templates_byte_identical(
    tmp_path: Any,
) -> None:
    """Before: the DB pod templates carried helm.sh/chart and the chart's app version, so every
    chart bump or image.tag change rolled MySQL and Redis."""
    before = db_pod_templates()
    after_tag = db_pod_templates("--set", "image.tag=9.9.9", "--set", "config.pageSize=25")
    assert after_tag == before

    bumped = tmp_path / "orders"
    bumped.mkdir()
    for path in CHART.rglob("*"):
        target = bumped / path.relative_to(CHART)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            target.write_bytes(path.read_bytes())
    meta = dict(CHART_META, version="9.9.9", appVersion="9.9.9")
    (bumped / "Chart.yaml").write_text(yaml.safe_dump(meta))
    result = run(
        [tool("helm"), "template", "orders", str(bumped), "--namespace", "orders"],
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for name, template in before.items():
        assert yaml.safe_dump(one(docs, "StatefulSet", name)["spec"]["template"]) == template


def test_database_pods_carry_their_own_image_version() -> None:
    labels = one(render(), "StatefulSet", "orders-mysql")["spec"]["template"]["metadata"]["labels"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert labels["app.kubernetes.io/version"] == values["mysql"]["image"]["tag"]
    assert "helm.sh/chart" not in labels


@pytest.mark.parametrize("component", ["mysql", "redis"])
def test_existing_claim_replaces_the_claim_template(component: str) -> None:
    docs = render(
        (
            "--set",
            f"{component}.persistence.enabled=true",
            "--set",
            f"{component}.persistence.existingClaim=restored",
        )
    )
    statefulset = one(docs, "StatefulSet", f"orders-{component}")
    assert "volumeClaimTemplates" not in statefulset["spec"]
    volumes = {v["name"]: v for v in statefulset["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "restored"}
    pod = statefulset["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"


@pytest.mark.parametrize("component", ["mysql", "redis"])
def test_database_pods_take_their_own_node_placement(component: str) -> None:
    docs = render(
        (
            "--set",
            f"{component}.nodeSelector.disk=ssd",
            "--set",
            f"{component}.tolerations[0].key=db",
            "--set",
            f"{component}.tolerations[0].operator=Exists",
        )
    )
    pod = one(docs, "StatefulSet", f"orders-{component}")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "db", "operator": "Exists"}]
    api = one(docs, "Deployment", "orders")["spec"]["template"]["spec"]
    assert "nodeSelector" not in api


def test_no_statefulset_selector_changes_with_the_release_contents() -> None:
    """The selector is immutable: it must hold only name, instance and component."""
    for statefulset in find(render(), "StatefulSet"):
        assert set(statefulset["spec"]["selector"]["matchLabels"]) == {
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/component",
        }


# ---- passwords that stay put ----------------------------------------------------------------

ALL_PASSWORDS = (
    *(f"mysql.auth.{role}Password=pw-{role}" for role in ("root", "api", "invalidator", "migrate")),
    *(f"redis.auth.{k}=pw-redis-{k}" for k in ("password", "apiPassword", "invalidatorPassword")),
)


def template(*args: str) -> Any:
    return run([tool("helm"), "template", "orders", str(CHART), "--namespace", "orders", *args])


def test_an_upgrade_renders_without_reading_the_passwords_back() -> None:
    """Before (issue 11): an upgrade render without lookup generated new passwords, then failed
    with a guard whose advice restarted MySQL and Redis at once (issue 22). Now no render makes a
    password: the secrets Job keeps the ones the cluster's Secret already holds."""
    result = template("--is-upgrade")
    assert result.returncode == 0, result.stderr
    assert "PASSWORDS ERROR" not in result.stderr


def test_an_upgrade_with_the_passwords_given_or_an_existing_secret_renders() -> None:
    sets = [arg for value in ALL_PASSWORDS for arg in ("--set-string", value)]
    assert template("--is-upgrade", *sets).returncode == 0
    existing = template(
        "--is-upgrade",
        "--set",
        "mysql.auth.existingSecret=orders-db",
        "--set",
        "redis.auth.existingSecret=orders-cache",
    )
    assert existing.returncode == 0, existing.stderr


def test_a_first_install_renders_the_job_that_generates_the_passwords() -> None:
    result = template()
    assert result.returncode == 0, result.stderr
    assert "name: orders-secrets" in result.stdout


# ---- hooks that read the new values ---------------------------------------------------------


def test_nothing_runs_before_this_releases_objects_exist() -> None:
    """Before: the migrate Job was a pre-upgrade hook reading the previous release's ConfigMap
    (and, as Argo CD's PreSync, ran before the StatefulSet existed on a first sync). Now no hook
    runs before the release's objects, and the one hook left carries its settings inline."""
    docs = render(("--set", "seed.enabled=true"))
    hooks = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["helm.sh/hook"]
        for d in docs
        if "helm.sh/hook" in d["metadata"].get("annotations", {})
    }
    # The secrets Job (and its account, role and given passwords) come first: they create the
    # Secret every pod reads, and depend on nothing of the release.
    assert hooks.pop("orders-secrets") == "pre-install,pre-upgrade"
    # The role users on an existing data directory, before the seed Job (issue 22).
    assert hooks.pop("orders-mysql-users") == "post-install,post-upgrade"
    assert hooks == {"orders-seed": "post-install,post-upgrade", "orders-test-page": "test"}
    for name in ("orders", "orders-invalidator"):
        pod = one(docs, "Deployment", name)["spec"]["template"]["spec"]
        assert [c["args"] for c in pod["initContainers"]] == [["migrate"]]
