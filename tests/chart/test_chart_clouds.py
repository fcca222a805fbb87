"""Issue 22: the first install on GKE, EKS, AKS, OpenShift and Argo CD, pinned at the render level.

Each test names the defect it guards against. What only a real cluster can show is listed in
docs/kubernetes.md ("What a real cluster must still prove").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import (
    CHART,
    MYSQL_ONLY_FLAGS,
    ROOT,
    find,
    one,
    render,
    render_text,
    run,
    tool,
)
from tests.support.network_policy import KUBE_SYSTEM, Network

# ---- 1. MySQL on cloud block volumes (lost+found at the volume's root) ---------------------


def mysql_pod(*args: str) -> dict[str, Any]:
    return dict(one(render(args), "StatefulSet", "orders-mysql")["spec"]["template"]["spec"])


def flag(container: dict[str, Any], name: str) -> str | None:
    for arg in container.get("args", []):
        if arg.startswith(f"--{name}="):
            return str(arg.split("=", 1)[1])
    return None


def test_mysql_keeps_its_data_in_a_subdirectory_of_the_volume() -> None:
    """Before: the claim's root was the data directory; GCE PD, EBS and Azure Disk put
    lost+found there and `mysqld --initialize` refuses a non-empty directory: a crash loop."""
    pod = mysql_pod()
    mysql = pod["containers"][0]
    (data_mount,) = [m for m in mysql["volumeMounts"] if m["name"] == "data"]
    datadir = flag(mysql, "datadir")
    assert datadir is not None, mysql["args"]
    assert Path(datadir).parent == Path(data_mount["mountPath"])
    assert Path(datadir).name != "lost+found"


def test_a_volume_initialised_at_its_root_keeps_working_with_an_empty_subdirectory() -> None:
    mysql = mysql_pod("--set", "mysql.persistence.dataSubdirectory=")["containers"][0]
    (data_mount,) = [m for m in mysql["volumeMounts"] if m["name"] == "data"]
    assert flag(mysql, "datadir") == data_mount["mountPath"]


def run_prepare(volume: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The rendered init container's script, run with its own env against a local directory."""
    pod = mysql_pod(*args)
    (prepare,) = [c for c in pod["initContainers"] if c["name"] == "prepare-datadir"]
    mount = next(m["mountPath"] for m in prepare["volumeMounts"] if m["name"] == "data")
    env = {e["name"]: str(e["value"]).replace(mount, str(volume)) for e in prepare["env"]}
    assert prepare["command"][:2] == ["sh", "-c"]
    return subprocess.run(
        [*prepare["command"], *prepare.get("args", [])],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def initialize_would_accept(datadir: Path) -> bool:
    """`mysqld --initialize`'s rule: the data directory is absent or empty."""
    return not datadir.exists() or not any(datadir.iterdir())


def test_the_init_step_prepares_a_cloud_volume_with_lost_found(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)
    assert not initialize_would_accept(volume)  # the defect, as the old chart met it
    result = run_prepare(volume)
    assert result.returncode == 0, result.stdout + result.stderr
    datadir = flag(mysql_pod()["containers"][0], "datadir")
    assert datadir is not None
    local = volume / Path(datadir).name
    assert local.is_dir()
    assert initialize_would_accept(local)
    assert (volume / "lost+found").is_dir()  # left alone


@pytest.mark.integration
def test_mysqld_with_the_rendered_flags_runs_in_the_prepared_subdirectory(tmp_path: Path) -> None:
    """The rendered init step, then the rendered server flags, on a volume with lost+found: a
    real server (MariaDB, the only one this machine has) starts in the data directory beside it
    and keeps the binlog retention the values set. Initialisation is the template data directory
    copied into the prepared, empty one (what `mysqld --initialize` would write there)."""
    from tests.support.servers import MariaDBServer, _template_datadir, free_port

    volume = tmp_path / "volume"
    (volume / "lost+found").mkdir(parents=True)
    assert run_prepare(volume).returncode == 0
    mysql = mysql_pod()["containers"][0]
    datadir = flag(mysql, "datadir")
    assert datadir is not None
    local = volume / Path(datadir).name
    shutil.copytree(_template_datadir(as_root=os.geteuid() == 0), local, dirs_exist_ok=True)
    # MySQL's GTID flags have no MariaDB spelling (MariaDB's GTIDs are always on); they are
    # checked by name in test_the_in_release_mysql_keeps_gtids_on_so_replicas_can_be_added.
    args = [
        a.replace(datadir, str(local)) for a in mysql["args"] if not a.startswith(MYSQL_ONLY_FLAGS)
    ]
    server = MariaDBServer(tmp_path, free_port(), owns_workdir=False, extra_args=args)
    server.start()
    try:
        with server.connect() as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT @@datadir, @@log_bin, @@binlog_expire_logs_seconds, @@max_binlog_size"
            )
            row = cursor.fetchone()
    finally:
        server.close()
    assert row is not None
    assert Path(row[0]) == local
    assert row[1] == 1
    assert str(row[2]) == flag(mysql, "binlog-expire-logs-seconds")
    assert row[3] == 64 * 1024 * 1024
    assert (volume / "lost+found").is_dir()


def test_the_init_step_refuses_a_volume_initialised_at_its_root(tmp_path: Path) -> None:
    """An older release's data sits at the root: starting in an empty subdirectory would
    initialise a second, empty database. Refuse, and say which value keeps the old layout."""
    volume = tmp_path / "volume"
    (volume / "mysql").mkdir(parents=True)
    (volume / "ibdata1").write_bytes(b"")
    result = run_prepare(volume)
    assert result.returncode != 0
    assert "mysql.persistence.dataSubdirectory" in result.stdout + result.stderr
    assert run_prepare(volume, "--set", "mysql.persistence.dataSubdirectory=").returncode == 0


# ---- 2. the kind e2e workflow and `make dev` on a skaffold that speaks Helm 4 --------------

SKAFFOLD_FOR_HELM4 = (2, 17, 0)


def version(text: str) -> tuple[int, ...]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)", text.strip())
    assert match, text
    return tuple(int(part) for part in match.groups())


def e2e() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / ".github/workflows/kind-e2e.yaml").read_text()))


def test_the_e2e_pins_a_skaffold_that_supports_helm_4() -> None:
    """Before: skaffold v2.16.1 ran `helm version --client`, which Helm 4 rejects."""
    env = e2e()["env"]
    if version(env["HELM_VERSION"])[0] >= 4:
        assert version(env["SKAFFOLD_VERSION"]) >= SKAFFOLD_FOR_HELM4


def test_make_dev_refuses_a_skaffold_too_old_for_helm_4(tmp_path: Path) -> None:
    fake = tmp_path / "skaffold"
    fake.write_text('#!/bin/sh\n[ "$1" = version ] && echo v2.16.1 && exit 0\nexit 99\n')
    fake.chmod(0o755)
    result = subprocess.run(
        ["make", "--no-print-directory", "dev", f"SKAFFOLD={fake}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "2.17" in result.stdout + result.stderr
    assert "exit 99" not in result.stdout + result.stderr


def test_ct_is_told_which_chart_to_test() -> None:
    """Before: ct tested only charts changed against main, so on main it tested nothing."""
    ct = yaml.safe_load((ROOT / "ct.yaml").read_text())
    assert ct["charts"] == ["helm/orders"]


SKAFFOLD_LABELLED_KINDS = {"Pod", "Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"}


def skaffold_post_render(docs: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """skaffold's labeller: `skaffold.dev/run-id` on every `.metadata.labels` of the kinds it
    manages, except the paths a `resourceSelector.deny` rule names for that kind."""
    import copy

    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    denied: dict[str, list[str]] = {}
    for rule in config.get("resourceSelector", {}).get("deny", []):
        denied.setdefault(rule["groupKind"].split(".")[0], []).extend(rule.get("labels", []))
    out = copy.deepcopy(docs)
    for doc in out:
        if doc["kind"] not in SKAFFOLD_LABELLED_KINDS:
            continue
        paths = denied.get(doc["kind"], [])
        if ".*" in paths:
            continue
        doc["metadata"].setdefault("labels", {})["skaffold.dev/run-id"] = run_id
        template = doc.get("spec", {}).get("template")
        if template is not None and ".spec.template.metadata.labels" not in paths:
            template["metadata"].setdefault("labels", {})["skaffold.dev/run-id"] = run_id
    return out


def test_skaffold_labels_leave_the_database_pod_templates_alone() -> None:
    """Before: skaffold >= 2.17 stamps a per-run label on every pod template: MySQL and Redis
    rolled on every `skaffold dev` and the e2e's 'MySQL not restarted' check failed."""
    docs = render()
    first, second = skaffold_post_render(docs, "run-1"), skaffold_post_render(docs, "run-2")
    for name in ("orders-mysql", "orders-redis"):
        assert (
            one(first, "StatefulSet", name)["spec"]["template"]
            == one(second, "StatefulSet", name)["spec"]["template"]
        )
    # The model does label what skaffold labels: the API rolls with a new image anyway.
    assert (
        one(first, "Deployment", "orders")["spec"]["template"]
        != one(second, "Deployment", "orders")["spec"]["template"]
    )


def test_the_e2e_proves_a_second_skaffold_run_keeps_mysql() -> None:
    steps = [s for job in e2e()["jobs"].values() for s in job["steps"]]
    runs = [s for s in steps if "skaffold run" in s.get("run", "")]
    assert len(runs) >= 2
    second = runs[-1]["run"]
    assert "orders-mysql-0" in second
    assert 'test "${before}" = "${after}"' in second


# ---- 3. renders without randomness (Argo CD, Flux, helm template | kubectl apply) ----------


@pytest.mark.parametrize(
    "args",
    [(), ("--set", "seed.enabled=true"), ("-f", str(CHART / "values-prod.yaml"))],
    ids=["defaults", "seed", "prod"],
)
def test_two_renders_are_byte_identical(args: tuple[str, ...]) -> None:
    """Before: every render generated new passwords; Argo CD renders on every sync."""
    render_text.cache_clear()
    first = render_text(args)
    render_text.cache_clear()
    assert render_text(args) == first


def test_no_template_generates_a_value_at_render_time() -> None:
    for path in (CHART / "templates").rglob("*"):
        if path.is_file():
            text = path.read_text()
            for function in ("randAlphaNum", "randAlpha", "randAscii", "randNumeric", "uuidv4"):
                assert function not in text, f"{path.name} uses {function}"


def test_an_upgrade_render_needs_no_lookup_and_no_passwords() -> None:
    """Before: `--is-upgrade` without lookup failed with PASSWORDS ERROR (the guard whose advice
    restarted MySQL and Redis at once)."""
    result = run(
        [tool("helm"), "template", "orders", str(CHART), "--namespace", "orders", "--is-upgrade"]
    )
    assert result.returncode == 0, result.stderr


def test_missing_passwords_are_generated_once_in_the_cluster() -> None:
    docs = render()
    job = one(docs, "Job", "orders-secrets")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert {"pre-install", "pre-upgrade"} <= set(hooks)
    rule = next(
        r for r in one(docs, "Role", "orders-secrets")["rules"] if "patch" in r.get("verbs", [])
    )
    assert rule["resources"] == ["secrets"]
    assert rule["resourceNames"] == ["orders"]
    # The Secret the pods read is never rendered with a generated value.
    assert find(docs, "Secret", "orders") == []


# ---- 4. DNS on OpenShift and with NodeLocal DNSCache ----------------------------------------

OPENSHIFT_DNS_NS = {"kubernetes.io/metadata.name": "openshift-dns"}
OPENSHIFT_DNS_POD = {"dns.operator.openshift.io/daemonset-dns": "default"}


@pytest.mark.parametrize("component", ["api", "invalidator", "inspector", "test"])
def test_openshift_pods_reach_openshift_dns_on_5353(component: str) -> None:
    """Before: DNS was allowed only to kube-dns on 53; OpenShift's answers in openshift-dns on
    5353, so every lookup timed out."""
    net = Network(render(("--set", "openshift=true")))
    for protocol in ("UDP", "TCP"):
        assert net.allowed(
            component, "Egress", 5353, protocol, (OPENSHIFT_DNS_NS, OPENSHIFT_DNS_POD)
        )


def test_nodelocal_dnscache_is_reachable_on_its_link_local_address() -> None:
    docs = render(("--set", "networkPolicy.dns.nodeLocalAddress=169.254.20.10"))
    for policy in find(docs, "NetworkPolicy"):
        # MySQL and Redis open no connection; the secrets Job reaches the API by address, no DNS.
        if policy["metadata"]["name"] in {
            "orders-default-deny",
            "orders-mysql",
            "orders-redis",
            "orders-secrets",
        }:
            continue
        peers = [
            peer
            for rule in policy["spec"]["egress"]
            if {p["port"] for p in rule.get("ports", [])} >= {53}
            for peer in rule.get("to", [])
        ]
        assert {"ipBlock": {"cidr": "169.254.20.10/32"}} in peers, policy["metadata"]["name"]


def test_dns_peers_and_ports_are_configurable() -> None:
    net = Network(
        render(
            (
                "--set",
                "networkPolicy.dns.ports[0]=1053",
                "--set",
                "networkPolicy.dns.to[0].namespaceSelector.matchLabels.dns=yes",
            )
        )
    )
    assert net.allowed("api", "Egress", 1053, "UDP", ({"dns": "yes"}, {}))
    assert not net.allowed("api", "Egress", 53, "UDP", (KUBE_SYSTEM, {"k8s-app": "kube-dns"}))


# ---- 5. silent prerequisites -----------------------------------------------------------------


def test_global_storage_class_reaches_every_claim() -> None:
    docs = render(
        (
            "--set",
            "global.storageClass=gp3",
            "--set",
            "redis.persistence.enabled=true",
        )
    )
    for name in ("orders-mysql", "orders-redis"):
        (claim,) = one(docs, "StatefulSet", name)["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["storageClassName"] == "gp3"
    own = render(("--set", "global.storageClass=gp3", "--set", "mysql.persistence.storageClass=x"))
    (claim,) = one(own, "StatefulSet", "orders-mysql")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "x"


def test_the_chart_version_moved_past_0_1_0_with_a_changelog_line() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert version(meta["version"]) > (0, 1, 0)
    assert f"chart {meta['version']}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_documented_seeded_install_waits_long_enough() -> None:
    """Before: the seeded first install had no --timeout; it can outlast Helm's 5 minutes."""
    for doc in ("README.md", "helm/orders/README.md", "docs/kubernetes.md"):
        text = (ROOT / doc).read_text().replace("\\\n", " ")
        seeded = [
            line for line in text.splitlines() if "helm install" in line and "seed.enabled" in line
        ]
        assert seeded, doc
        for line in seeded:
            assert "--wait" in line, line
            assert re.search(r"--timeout \d+m", line), line


# ---- 6. a password MySQL ignores does not restart it ----------------------------------------


def template_of(name: str, kind: str, *args: str) -> Any:
    return one(render(args), kind, name)["spec"]["template"]


def test_setting_passwords_restarts_neither_mysql_nor_redis_together() -> None:
    """Before: setting the current passwords (the guard's advice) changed checksum/secret on
    MySQL and Redis at once: both restarted and every /readyz turned 503."""
    sets = ("--set-string", "mysql.auth.apiPassword=x", "--set-string", "redis.auth.apiPassword=y")
    assert template_of("orders-mysql", "StatefulSet", *sets) == template_of(
        "orders-mysql", "StatefulSet"
    )
    assert template_of("orders-mysql", "StatefulSet", "--set", "mysql.users.api=other") == (
        template_of("orders-mysql", "StatefulSet")
    )
    mysql_only = ("--set-string", "mysql.auth.apiPassword=x")
    assert template_of("orders-redis", "StatefulSet", *mysql_only) == template_of(
        "orders-redis", "StatefulSet"
    )


def run_users_job(server: Any, *sets: str) -> subprocess.CompletedProcess[str]:
    """The rendered mysql-users Job's script against a throwaway server (root, no password)."""
    args = tuple(a for s in sets for a in ("--set-string", s))
    job = one(render(args), "Job", "orders-mysql-users")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(MYSQL_HOST="127.0.0.1", MYSQL_PORT=str(server.port), MYSQL_ROOT_PASSWORD="")
    given = dict(s.split("=", 1) for s in sets)
    for role in ("api", "invalidator", "migrate"):
        env[f"ORDERS_{role.upper()}_PASSWORD"] = given.get(f"mysql.auth.{role}Password", role)
    (tmp,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tmp"]
    script = container["command"][2].replace(f"{tmp}/", f"{server.workdir}/")
    return subprocess.run(
        [container["command"][0], "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.integration
def test_changed_users_and_passwords_reach_an_existing_mysql_without_a_restart() -> None:
    """Before: changing mysql.users.* restarted MySQL and created no user (the init script runs
    only on an empty data directory). Now a post-install/post-upgrade Job runs it as root."""
    import pymysql

    from tests.support.servers import MariaDBServer

    job = one(render(), "Job", "orders-mysql-users")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    server = MariaDBServer.create()
    try:
        server.cli("CREATE DATABASE orders")
        first = run_users_job(server, "mysql.users.api=orders_reader", "mysql.auth.apiPassword=p1")
        assert first.returncode == 0, first.stdout + first.stderr
        login = {"host": "127.0.0.1", "port": server.port, "database": "orders"}
        pymysql.connect(user="orders_reader", password="p1", **login).close()  # type: ignore[arg-type]
        again = run_users_job(server, "mysql.users.api=orders_reader", "mysql.auth.apiPassword=p2")
        assert again.returncode == 0, again.stdout + again.stderr
        pymysql.connect(user="orders_reader", password="p2", **login).close()  # type: ignore[arg-type]
        with pytest.raises(pymysql.err.OperationalError):
            pymysql.connect(user="orders_reader", password="p1", **login)  # type: ignore[arg-type]
        assert "p2" not in again.stdout + again.stderr
    finally:
        server.close()


# ---- 7. binlog retention ---------------------------------------------------------------------


def test_binlog_retention_is_a_value_with_a_safe_default() -> None:
    """Before: MySQL 8.4 kept 30 days of binlog; the heartbeats alone filled 1 GiB volumes."""
    mysql = mysql_pod()["containers"][0]
    expire = flag(mysql, "binlog-expire-logs-seconds")
    assert expire is not None
    assert 0 < int(expire) <= 7 * 86400
    assert flag(mysql, "max-binlog-size") is not None  # purging happens at rotation
    changed = mysql_pod("--set", "mysql.binlog.expireSeconds=3600")["containers"][0]
    assert flag(changed, "binlog-expire-logs-seconds") == "3600"


# ---- 9. the inspector in the chart, and the smaller items -----------------------------------


def test_the_inspector_runs_by_default_with_its_own_account_and_bounded_cost() -> None:
    """Before: no template ran `orders-service inspect`: the consistency panels and
    OrdersCacheInconsistent could never show anything."""
    docs = render()
    inspector = one(docs, "Deployment", "orders-inspector")
    pod = inspector["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["inspect"]
    assert pod["serviceAccountName"] == "orders-inspector"
    one(docs, "ServiceAccount", "orders-inspector")
    config = one(docs, "ConfigMap", "orders")["data"]
    port = int(config["ORDERS_INSPECTOR_METRICS_PORT"])
    assert container["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert float(config["ORDERS_INSPECTOR_INTERVAL"]) >= 1
    assert int(config["ORDERS_INSPECTOR_PAGES"]) <= 10
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"


def test_the_inspector_is_scraped_allowed_and_checked_by_helm_test() -> None:
    docs = render(("--set", "metrics.serviceMonitor.enabled=true"))
    monitor = one(docs, "ServiceMonitor", "orders-inspector")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = one(docs, "Service", "orders-inspector")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["spec"]["selector"].items()
    net = Network(docs)
    monitoring = ({"kubernetes.io/metadata.name": "monitoring"}, {})
    port = service["spec"]["ports"][0]["port"]
    assert net.allowed("inspector", "Ingress", port, "TCP", monitoring)
    for database, db_port in (("mysql", 3306), ("redis", 6379)):
        assert net.allowed("inspector", "Egress", db_port, "TCP", net.pod(database))
        assert net.allowed(database, "Ingress", db_port, "TCP", net.pod("inspector"))
    test_pod = one(docs, "Pod", "orders-test-page")
    assert f"orders-inspector.orders.svc:{port}/metrics" in yaml.safe_dump(test_pod)
    assert net.allowed("test", "Egress", port, "TCP", net.pod("inspector"))
    assert net.allowed("inspector", "Ingress", port, "TCP", net.pod("test"))


def test_redis_tls_with_the_in_release_redis_is_refused() -> None:
    """Before: `tls.redis.enabled` with the in-release Redis rendered rediss:// to a plain
    server."""
    result = run(
        [
            tool("helm"),
            "template",
            "orders",
            str(CHART),
            "--set",
            "tls.redis.enabled=true",
            "--set",
            "tls.redis.caSecret=ca",
        ]
    )
    assert result.returncode != 0
    assert "redis.enabled=false" in result.stderr


def test_the_test_pod_can_be_left_out_of_a_plain_apply() -> None:
    """Before: `helm template | kubectl apply` also created the helm test Pod."""
    docs = render(("--set", "tests.enabled=false"))
    assert find(docs, "Pod") == []


def test_notes_do_not_promise_a_404_on_an_empty_table() -> None:
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "404" not in notes


def test_database_images_are_exact_versions_under_shippable_licences() -> None:
    """Before: `redis:7` floated to 7.4 (RSALv2/SSPL) and `mysql:8.4` to any patch."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert re.fullmatch(r"7\.2\.\d+", values["redis"]["image"]["tag"])  # BSD-3-Clause
    assert re.fullmatch(r"8\.4\.\d+", values["mysql"]["image"]["tag"])


def test_api_pods_can_start_without_waiting_for_mysql() -> None:
    """Item 8: API pods created during a MySQL outage (HPA scale-up, drained node) waited in
    their migrate init container for up to 300 s. Opt-in: the API skips it; the invalidator
    (and the seed Job) still migrate, so the schema is still applied by the release."""
    docs = render(("--set", "migrations.apiPods=false"))
    api = one(docs, "Deployment", "orders")["spec"]["template"]["spec"]
    assert "initContainers" not in api
    invalidator = one(docs, "Deployment", "orders-invalidator")["spec"]["template"]["spec"]
    assert [c["args"] for c in invalidator["initContainers"]] == [["migrate"]]
    default = one(render(), "Deployment", "orders")["spec"]["template"]["spec"]
    assert [c["args"] for c in default["initContainers"]] == [["migrate"]]


def test_pods_that_start_during_a_mysql_outage_are_documented() -> None:
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    assert "MySQL outage" in doc
    assert "migrate" in doc


def test_the_chart_tools_are_the_pinned_bytes() -> None:
    """mk/chart.mk checks the npm tarball and the helm and kubectl in it against pinned sha256s;
    the tools every chart test runs are those bytes."""
    import hashlib

    pins = dict(re.findall(r"^(HELM_SHA256|KUBECTL_SHA256) \?= ([0-9a-f]{64})$", MAKEFILE, re.M))
    assert set(pins) == {"HELM_SHA256", "KUBECTL_SHA256"}
    for name, pin in (("helm", pins["HELM_SHA256"]), ("kubectl", pins["KUBECTL_SHA256"])):
        assert hashlib.sha256(Path(tool(name)).read_bytes()).hexdigest() == pin, name
    assert re.search(r"^HELM_NPM_SHA256 \?= [0-9a-f]{64}$", MAKEFILE, re.M)
    assert "sha256sum -c --quiet -" in MAKEFILE


MAKEFILE = (ROOT / "mk" / "chart.mk").read_text()
