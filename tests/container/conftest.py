"""Fixtures for the container tests: podman from `make container-tools`, the image built from the
debootstrap base, and one container run exactly as the chart runs it.

A missing tool or base image fails the test with the make target that installs it, never a skip.
The container talks to the machine's shared MariaDB and Redis through a database and key prefix of
its own, both removed at the end; nothing else on either server is touched.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest
import redis
import requests

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PODMAN = ROOT / ".tools" / "podman" / "bin" / "podman"
CONTAINER_VENV_BIN = ROOT / ".tools" / "container" / "venv" / "bin"
BASE_IMAGE = os.environ.get("ORDERS_TEST_BASE_IMAGE", "localhost/pybase:bookworm")
TEST_IMAGE = "localhost/orders-service:pytest"
SETUP_HINT = "run `make container-tools` first"
# The machine's shared servers (same variables as tests/conftest.py). This module imports nothing
# from the service or the root conftest: the image is tested as a black box.
SHARED_MYSQL = os.environ.get("ORDERS_TEST_MYSQL", "mysql://root@127.0.0.1:3306")
SHARED_REDIS = os.environ.get("ORDERS_TEST_REDIS", "redis://127.0.0.1:6379/0")

# What the chart gives every container of the service (helm/orders/templates/_helpers.tpl and the
# Deployment's volumes): UID/GID 10001, read-only root, no capabilities, no privilege escalation,
# and a 64 MiB memory-backed emptyDir on /tmp.
CHART_RUN_FLAGS = (
    "--read-only",
    "--tmpfs=/tmp:rw,nosuid,nodev,size=64m",
    "--user=10001:10001",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--network=host",
)


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the project's podman (its own storage and configuration under .tools/podman)."""
    if not os.access(PODMAN, os.X_OK):
        pytest.fail(f"podman is not set up ({PODMAN} is missing): {SETUP_HINT}")
    try:
        result = subprocess.run(
            [str(PODMAN), *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"podman {' '.join(args)} took longer than {timeout} s: {expired.stderr!r}")
    if check and result.returncode != 0:
        command = " ".join(args)
        pytest.fail(f"podman {command} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def tool(name: str) -> Path:
    """A linter from the container venv, or a failure naming the target that installs it."""
    path = CONTAINER_VENV_BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{name} is not installed ({path} is missing): {SETUP_HINT}")
    return path


def delete_namespace(prefix: str) -> None:
    """Remove the run's cache keys: SCAN + UNLINK of its own prefix only, never a flush."""
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    seconds: float


@pytest.fixture(scope="session")
def image() -> BuiltImage:
    """The image, built like CI would from the debootstrap base (cached layers make reruns fast)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"base image {BASE_IMAGE} is missing: {SETUP_HINT}")
    start = time.monotonic()
    result = podman(
        "build",
        "--network=host",
        f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
        "--label=org.opencontainers.image.revision=pytest",
        "--label=org.opencontainers.image.version=0.0.0-pytest",
        f"--tag={TEST_IMAGE}",
        str(ROOT),
        timeout=540,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"podman build failed:\n{(result.stdout + result.stderr)[-6000:]}")
    return BuiltImage(TEST_IMAGE, time.monotonic() - start)


@pytest.fixture(scope="session")
def image_config(image: BuiltImage) -> dict[str, Any]:
    inspected: list[dict[str, Any]] = json.loads(podman("image", "inspect", image.tag).stdout)
    return inspected[0]


@dataclass
class Deployment:
    """The container's environment on this machine, and the containers started for it."""

    image: str
    env: dict[str, str]
    port: int
    names: list[str] = field(default_factory=list)

    def env_flags(self) -> list[str]:
        return [f"--env={key}={value}" for key, value in self.env.items()]

    def run_once(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """One-shot command (migrate, seed) in a container configured like the chart's Job."""
        return podman(
            "run", "--rm", *CHART_RUN_FLAGS, *self.env_flags(), self.image, *args, timeout=timeout
        )

    def start(self, *args: str) -> str:
        name = f"orders-ctest-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        podman(
            "run",
            "--detach",
            f"--name={name}",
            *CHART_RUN_FLAGS,
            *self.env_flags(),
            self.image,
            *args,
        )
        return name

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _server_connection(database: str | None = None) -> pymysql.Connection[Any]:
    parts = urlsplit(SHARED_MYSQL)
    try:
        return pymysql.connect(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            database=database,
        )
    except pymysql.err.OperationalError as error:
        pytest.fail(f"the machine's MariaDB at {SHARED_MYSQL} is unreachable: {error}")


@pytest.fixture(scope="module")
def deployment(image: BuiltImage) -> Iterator[Deployment]:
    """A private database on the shared MariaDB and a private Redis prefix; both removed after,
    with every container started for them."""
    name = f"orders_ctest_{uuid.uuid4().hex[:10]}"
    with _server_connection() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}`")
    port = free_port()
    deployed = Deployment(image.tag, service_env(f"{SHARED_MYSQL}/{name}", name, port), port)
    try:
        with containers_for(deployed):
            yield deployed
    finally:
        with _server_connection() as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@contextmanager
def containers_for(deployed: Deployment) -> Iterator[Deployment]:
    """Remove every container started for ``deployed`` and its Redis keys, whatever happens."""
    try:
        yield deployed
    finally:
        for name in deployed.names:
            podman("rm", "--force", "--time=0", name, check=False)
        delete_namespace(deployed.env["ORDERS_CACHE_PREFIX"])


def service_env(database_url: str, prefix: str, port: int) -> dict[str, str]:
    """The settings the chart's ConfigMap gives, pointed at this machine's servers."""
    return {
        "ORDERS_DATABASE_URL": database_url,
        "ORDERS_REDIS_URL": SHARED_REDIS,
        "ORDERS_CACHE_PREFIX": prefix,
        "ORDERS_PORT": str(port),
        "ORDERS_WORKERS": "2",
        "ORDERS_THREADS": "2",
        "ORDERS_LOG_FORMAT": "json",
    }


@dataclass(frozen=True)
class Running:
    """A started container and the port its HTTP server answers on."""

    name: str
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def host_pid(self) -> int:
        return int(podman("inspect", "--format={{.State.Pid}}", self.name).stdout.strip())

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]

    def wait_healthy(self, timeout: float = 60) -> Running:
        """Until /healthz answers 200; fails at once, with the logs, if the container exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = podman("inspect", "--format={{.State.Status}}", self.name).stdout.strip()
            if state not in {"running", "created", "configured"}:
                pytest.fail(f"{self.name} stopped ({state}) before it was healthy:\n{self.logs()}")
            try:
                if requests.get(self.url("/healthz"), timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass  # not listening yet, or workers still booting behind a bound socket
            time.sleep(0.3)
        pytest.fail(f"{self.name}: no answer on /healthz within {timeout} s:\n{self.logs()}")


@pytest.fixture(scope="module")
def seeded(deployment: Deployment) -> Deployment:
    """Migrations, then 1000 orders, each in its own read-only container (like the chart's Job)."""
    deployment.run_once("migrate")
    deployment.run_once("seed", "--orders", "1000")
    return deployment


@pytest.fixture(scope="module")
def server(seeded: Deployment) -> Running:
    """`orders-service serve` (the image's default command), ready when /healthz answers."""
    return Running(seeded.start(), seeded.port).wait_healthy()
