"""The chart and the service agree: every ORDERS_* variable the chart renders or documents is a
declared setting, and the rendered Deployment's command, env, port and probe paths, run locally
exactly as written, give a working service.

The chart is rendered for an external MySQL and Redis pointing at this machine's shared MariaDB
(throwaway database, created and dropped here) and Redis (a unique key prefix, deleted after).
The API pod's migrate init container and the seed Job's steps run first, each with its own
command and env; then the API's container
command starts, its startup, readiness and liveness probe paths must answer 200 on its container
port, /orders/1 must be a page, and SIGTERM must end it well within the pod's grace period.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest
import redis
import requests

from service.config import SETTINGS
from tests.support.chart import (
    CHART,
    SCENARIOS,
    Scenario,
    local_command,
    one,
    process_env,
    render,
)
from tests.support.servers import free_port

DECLARED = {setting.env for setting in SETTINGS}
# The scenarios every chart test renders, plus authentication on (its variables appear only then).
WITH_AUTH = Scenario(
    "auth",
    sets={
        "auth.issuer": "https://idp.example.com/",
        "auth.audience": "orders-api",
        "auth.jwksUrl": "https://idp.example.com/jwks.json",
        "auth.jwksAllowHttp": "true",
    },
)

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def throwaway() -> Iterator[dict[str, str]]:
    """A database and a cache prefix nobody else uses; both removed afterwards."""
    name = f"orders_chart_{uuid.uuid4().hex[:10]}"
    server = pymysql.connect(**MYSQL)  # type: ignore[arg-type]
    with server.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    try:
        yield {"database": name, "prefix": name}
    finally:
        with server.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        server.close()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


@pytest.fixture(scope="module")
def rendered(throwaway: dict[str, str]) -> list[dict[str, Any]]:
    sets = {
        "mysql.enabled": "false",
        "externalDatabase.host": MYSQL["host"],
        "externalDatabase.port": str(MYSQL["port"]),
        "externalDatabase.database": throwaway["database"],
        "externalDatabase.username": MYSQL["user"],
        "redis.enabled": "false",
        "externalRedis.host": "127.0.0.1",
        "externalRedis.port": "6379",
        "config.port": str(free_port()),
        "config.cachePrefix": throwaway["prefix"],
        "seed.enabled": "true",
        "seed.orders": "200",
        # The probes and /metrics answer only on the admin port (ORDERS_ADMIN_PORT).
        "config.adminPort": str(free_port()),
        "config.inspectorMetricsPort": str(free_port()),
    }
    args = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    args += [
        "--set-string",
        "externalDatabase.password=",
        "--set-string",
        "externalRedis.password=",
    ]
    return render(args)


def container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as Kubernetes would build it from the rendered objects."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        # The secrets Job writes the passwords given in the values (its hook Secret) unchanged.
        secret = one(docs, "Secret", f"{ref['name']}-given")
        env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def probe_until(url: str, deadline: float) -> requests.Response:
    """Probe like the kubelet: refused or timed-out attempts are retried until the budget ends."""
    while True:
        try:
            return requests.get(url, timeout=2)
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def readiness_turns_503(url: str, within: int) -> bool:
    """While draining, readiness must answer 503 (a probe that times out also counts as failed)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 503:
                return True
        except requests.RequestException:
            continue
        time.sleep(0.1)
    return False


@pytest.mark.integration
@pytest.mark.slow
def test_the_job_and_the_deployment_run_as_rendered(rendered: list[dict[str, Any]]) -> None:
    pod = one(rendered, "Deployment", "orders")["spec"]["template"]["spec"]
    job = one(rendered, "Job", "orders-seed")["spec"]["template"]["spec"]
    steps = pod["initContainers"] + job["initContainers"] + job["containers"]
    assert [c["name"] for c in steps] == ["migrate", "migrate", "seed"]
    for step in steps:
        result = subprocess.run(
            local_command(step),
            env=process_env(container_env(rendered, step)),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{step['name']}: {result.stdout}\n{result.stderr}"

    api = pod["containers"][0]
    env = container_env(rendered, api)
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    port = ports["http"]
    assert env["ORDERS_PORT"] == str(port)
    assert env["ORDERS_ADMIN_PORT"] == str(ports["admin"])
    probes = {kind: api[f"{kind}Probe"]["httpGet"] for kind in ("startup", "readiness", "liveness")}
    assert {probe["port"] for probe in probes.values()} == {"admin"}

    server = subprocess.Popen(
        local_command(api),
        env=process_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    admin = f"http://127.0.0.1:{ports['admin']}"
    try:
        startup_budget = (
            api["startupProbe"]["periodSeconds"] * api["startupProbe"]["failureThreshold"]
        )
        started = time.monotonic()
        first = probe_until(admin + probes["startup"]["path"], started + startup_budget)
        assert first.status_code == 200, first.text
        for kind in ("readiness", "liveness"):
            response = requests.get(admin + probes[kind]["path"], timeout=2)
            assert response.status_code == 200, f"{kind}: {response.text}"

        page = requests.get(base + "/orders/1", timeout=5)
        assert page.status_code == 200, page.text
        assert page.headers["X-Cache"] in {"MISS", "HIT", "BYPASS", "STALE"}
        assert page.json()
        assert requests.get(admin + "/metrics", timeout=5).status_code == 200
        assert requests.get(base + "/metrics", timeout=5).status_code == 404  # not public
        assert requests.get(admin + "/orders/1", timeout=5).status_code == 404

        # The `helm test` pod's own script, pointed at this server instead of the Service.
        test_pod = one(rendered, "Pod", "orders-test-page")["spec"]["containers"][0]
        script, auth, _url, seeded, inspector_url = test_pod["args"]
        assert (auth, seeded) == ("false", "true")
        assert inspector_url.endswith("/metrics")  # its part runs in the inspector's test below
        check = subprocess.run(
            [sys.executable, "-c", script, auth, base + "/orders/1", seeded, ""],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr

        # SIGTERM arrives after the preStop sleep; the rest of the grace period must suffice.
        pre_stop = pod["containers"][0]["lifecycle"]["preStop"]
        slept = pre_stop["sleep"]["seconds"] if "sleep" in pre_stop else 0
        budget = pod["terminationGracePeriodSeconds"] - slept
        stopping = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)  # as the kubelet: the main process only
        assert readiness_turns_503(
            admin + probes["readiness"]["path"], int(env["ORDERS_SHUTDOWN_DELAY"])
        )
        server.wait(timeout=budget)
        assert time.monotonic() - stopping < budget
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        assert server.stderr is not None
        server.stderr.close()


@pytest.mark.integration
@pytest.mark.slow
def test_the_invalidator_command_exists(rendered: list[dict[str, Any]]) -> None:
    """The shared MariaDB has no binlog, so the invalidator is not run; its command must exist."""
    container = one(rendered, "Deployment", "orders-invalidator")["spec"]["template"]["spec"][
        "containers"
    ][0]
    result = subprocess.run(
        [*local_command(container), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert container_env(rendered, container)["ORDERS_INVALIDATOR_METRICS_PORT"] == str(
        container["ports"][0]["containerPort"]
    )


@pytest.mark.integration
@pytest.mark.slow
def test_the_inspector_runs_as_rendered_and_answers_its_probe(
    rendered: list[dict[str, Any]],
) -> None:
    """Issue 22: the chart's inspector container, started as written, serves the metrics the
    dashboard and OrdersCacheInconsistent read, on the port its probes and Service use."""
    api = one(rendered, "Deployment", "orders")["spec"]["template"]["spec"]
    (migrate,) = api["initContainers"]
    done = subprocess.run(
        local_command(migrate),
        env=process_env(container_env(rendered, migrate)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pod = one(rendered, "Deployment", "orders-inspector")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = container_env(rendered, container)
    assert env["ORDERS_DATABASE_URL"].startswith("mysql://root@")  # the api role's user
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["port"] == "metrics"
    inspector = subprocess.Popen(
        local_command(container),
        env=process_env(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        response = probe_until(f"http://127.0.0.1:{port}{probe['path']}", deadline)
        assert response.status_code == 200
        assert "orders_build_info{" in response.text
        assert 'component="inspector"' in response.text
        assert "orders_inspector_checks_total" in response.text
    finally:
        inspector.send_signal(signal.SIGTERM)
        try:
            inspector.wait(timeout=pod["terminationGracePeriodSeconds"])
        finally:
            if inspector.poll() is None:
                inspector.kill()
                inspector.wait()
        assert inspector.stderr is not None
        inspector.stderr.close()
    assert inspector.returncode == 0


def _pod_specs(docs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        spec = doc.get("spec") or {}
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        if doc["kind"] == "Pod":
            yield spec
        elif "template" in spec:
            yield spec["template"]["spec"]


def orders_variables(docs: list[dict[str, Any]]) -> set[str]:
    """ORDERS_* names the chart hands to orders-service containers (env and envFrom ConfigMaps)."""
    config_maps = {
        d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"
    }
    names: set[str] = set()
    for pod in _pod_specs(docs):
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            if (container.get("command") or [""])[0] != "orders-service":
                continue
            names |= {item["name"] for item in container.get("env", [])}
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    names |= set(config_maps[source["configMapRef"]["name"]])
    return {name for name in names if name.startswith("ORDERS_")}


@pytest.mark.parametrize("scenario", [*SCENARIOS, WITH_AUTH], ids=lambda s: s.name)
def test_every_orders_variable_the_chart_renders_is_a_declared_setting(scenario: Scenario) -> None:
    rendered_names = orders_variables(render(scenario.args()))
    assert {"ORDERS_DATABASE_URL", "ORDERS_REDIS_URL", "ORDERS_PORT"} <= rendered_names
    assert rendered_names - DECLARED == set()


def test_the_auth_scenario_renders_the_auth_variables() -> None:
    """The extra scenario above is not vacuous: the auth block reaches the containers."""
    assert {"ORDERS_AUTH_ISSUER", "ORDERS_AUTH_JWKS_URL"} <= orders_variables(
        render(WITH_AUTH.args())
    )


def test_every_value_documented_as_a_variable_names_a_declared_setting() -> None:
    """values.yaml documents a value as ``# -- ORDERS_X: ...``: X must be a setting's variable."""
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*# -- (ORDERS_[A-Z0-9_]+):", text, flags=re.MULTILINE))
    assert len(documented) >= 20
    assert documented - DECLARED == set()
