"""Shared by the chart tests: the tools from `make chart-tools` and cached `helm template` runs.

Every tool lives in .tools/; a missing one fails the test with the make target that installs it,
never a skip, so CI cannot pass by accident on a machine without them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "orders"
TOOLS_BIN = ROOT / ".tools" / "bin"
NODE_MODULES = ROOT / ".tools" / "node" / "node_modules"

# Oldest and newest Kubernetes the chart supports; Chart.yaml's kubeVersion and annotation agree.
KUBE_VERSIONS = ("1.29.0", "1.37.0")


@dataclass(frozen=True)
class Scenario:
    """One way users install the chart: extra values files and --set flags."""

    name: str
    values_files: tuple[str, ...] = ()
    sets: dict[str, str] = field(default_factory=dict)

    def args(self) -> list[str]:
        args: list[str] = []
        for values_file in self.values_files:
            args += ["-f", str(CHART / values_file)]
        for key, value in self.sets.items():
            args += ["--set-string" if key.endswith("Password") else "--set", f"{key}={value}"]
        return args


# The matrix the issue asks for, plus a single replica (no PDB).
SCENARIOS = (
    Scenario("defaults"),
    Scenario("prod", values_files=("values-prod.yaml",)),
    Scenario("hpa", sets={"autoscaling.enabled": "true"}),
    Scenario(
        "external",
        sets={
            "mysql.enabled": "false",
            "externalDatabase.host": "mysql.example.internal",
            "externalDatabase.password": "s3cret",
            "redis.enabled": "false",
            "externalRedis.host": "redis.example.internal",
            "externalRedis.password": "s3cret",
        },
    ),
    Scenario(
        "existing-secrets",
        sets={
            "mysql.auth.existingSecret": "orders-db",
            "redis.auth.existingSecret": "orders-cache",
        },
    ),
    Scenario(
        "monitoring",
        sets={
            "metrics.serviceMonitor.enabled": "true",
            "metrics.prometheusRule.enabled": "true",
            "metrics.grafanaDashboard.enabled": "true",
        },
    ),
    Scenario("no-networkpolicy", sets={"networkPolicy.enabled": "false"}),
    Scenario(
        "managed-tls-ingress",
        sets={
            "mysql.enabled": "false",
            "externalDatabase.host": "db.example.internal",
            "externalDatabase.password": "s3cret",
            "redis.enabled": "false",
            "externalRedis.host": "cache.example.internal",
            "externalRedis.password": "s3cret",
            "tls.mysql.enabled": "true",
            "tls.mysql.caSecret": "db-ca",
            "tls.redis.enabled": "true",
            "tls.redis.caSecret": "cache-ca",
            "ingress.enabled": "true",
            "ingress.hosts[0].host": "orders.example.com",
            "seed.enabled": "true",
            "extraEnvVarsSecret": "orders-extra",
            "networkPolicy.otlp.port": "4318",
        },
    ),
    Scenario(
        "openshift-ha",
        sets={"openshift": "true", "invalidator.replicas": "2", "seed.enabled": "true"},
    ),
    Scenario("single-replica", sets={"replicaCount": "1"}),
    # Issues 19 and 20: the in-release Redis with replicas and Sentinels; managed Sentinel and
    # Cluster forms (the cluster over TLS); managed MySQL read replicas.
    Scenario("redis-replication", sets={"redis.architecture": "replication"}),
    Scenario(
        "external-sentinel-replicas",
        sets={
            "mysql.enabled": "false",
            "externalDatabase.host": "db.example.internal",
            "externalDatabase.password": "s3cret",
            "externalDatabase.replicaHosts[0].host": "db-replica-1.example.internal",
            "externalDatabase.replicaHosts[1].host": "db-replica-2.example.internal",
            "externalDatabase.replicaHosts[1].port": "3307",
            "externalDatabase.replicaPassword": "r3plica",
            "redis.enabled": "false",
            "externalRedis.topology": "sentinel",
            "externalRedis.hosts[0].host": "sentinel-0.example.internal",
            "externalRedis.hosts[1].host": "sentinel-1.example.internal",
            "externalRedis.hosts[2].host": "sentinel-2.example.internal",
            "externalRedis.hosts[2].port": "26380",
            "externalRedis.sentinel.masterName": "cache",
            "externalRedis.sentinel.password": "s3ntinel",
            "externalRedis.password": "s3cret",
        },
    ),
    Scenario(
        "external-cluster-tls",
        sets={
            "mysql.enabled": "false",
            "externalDatabase.host": "db.example.internal",
            "externalDatabase.password": "s3cret",
            "externalDatabase.replicaHosts[0].host": "db-replica-1.example.internal",
            "tls.mysql.enabled": "true",
            "tls.mysql.caSecret": "db-ca",
            "redis.enabled": "false",
            "externalRedis.topology": "cluster",
            "externalRedis.hosts[0].host": "clustercfg.cache.example.internal",
            "externalRedis.hosts[1].host": "10.0.0.12",
            "externalRedis.hosts[1].port": "6380",
            "externalRedis.username": "orders",
            "externalRedis.password": "s3cret",
            "tls.redis.enabled": "true",
            "tls.redis.caSecret": "cache-ca",
        },
    ),
)

# mysqld flags of the chart that MariaDB (the only server this machine has) does not know:
# MariaDB's GTIDs are always on and it spells log-replica-updates log-slave-updates.
MYSQL_ONLY_FLAGS = ("--gtid-mode=", "--enforce-gtid-consistency=", "--log-replica-updates=")


def tool(name: str, target: str = "chart-tools") -> str:
    """Path of a tool in .tools/bin, or a failure naming the make target that installs it."""
    path = TOOLS_BIN / name
    if not (path.exists() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} is missing: run `make {target}`", pytrace=False)
    return str(path)


def helm_env() -> dict[str, str]:
    """helm keeps its caches in the project, as mk/chart.mk sets them."""
    helm_home = ROOT / ".tools" / "helm"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(helm_home / "cache"),
        "HELM_CONFIG_HOME": str(helm_home / "config"),
        "HELM_DATA_HOME": str(helm_home / "data"),
    }


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool; the result carries stdout and stderr for assertion messages."""
    return subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=120, env=helm_env(), **kwargs
    )


@cache
def render_text(args: tuple[str, ...], kube_version: str = KUBE_VERSIONS[-1]) -> str:
    """`helm template` output; cached because many tests read the same renderings."""
    result = run(
        [
            tool("helm"),
            "template",
            "orders",
            str(CHART),
            "--namespace",
            "orders",
            "--kube-version",
            kube_version,
            *args,
        ]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(
    args: tuple[str, ...] | list[str] = (), kube_version: str = KUBE_VERSIONS[-1]
) -> list[dict[str, Any]]:
    """The rendered manifests as dicts (empty documents dropped)."""
    text = render_text(tuple(args), kube_version)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Documents of one kind (and optionally one name)."""
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


# The chart with bearer-token auth on (the chart tests and the API under gunicorn render it).
AUTH = (
    "--set",
    "auth.issuer=https://idp.example.com/realms/shop",
    "--set",
    "auth.audience=orders-api",
    "--set",
    "auth.jwksUrl=https://idp.example.com/realms/shop/protocol/openid-connect/certs",
)


VENV_BIN = Path(sys.executable).parent


def local_command(container: dict[str, Any]) -> list[str]:
    """The container's command and args, with the image's orders-service replaced by the venv's."""
    command = [*container["command"], *container.get("args", [])]
    assert command[0] == "orders-service", "the chart must start the service through its CLI"
    return [str(VENV_BIN / "orders-service"), *command[1:]]


def process_env(env: dict[str, str]) -> dict[str, str]:
    """Exactly the chart's settings: no ORDERS_*/OTEL_* leaks in from the test's environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ORDERS_", "OTEL_"))}
    return {**base, **env}
