"""The image is really built and run: from a debootstrap base with podman, read-only, as UID 10001,
against this machine's MariaDB and Redis, the way the Helm chart runs it."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.container.conftest import (
    BASE_IMAGE,
    ROOT,
    SHARED_REDIS,
    BuiltImage,
    Deployment,
    Running,
    podman,
)

# The first test also pays for the image build: a cold one downloads every dependency.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

SECRET_WORDS = re.compile(r"pass(word)?|secret|token|credential|api[_-]?key", re.IGNORECASE)
# user:password@ in any URL
URL_CREDENTIALS = re.compile(r"://[^/\s:@\"']+:[^/\s@\"']+@")


def process_uids(pid: int) -> set[int]:
    """Real, effective, saved and filesystem UIDs of a host process (the Uid: line)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return {int(value) for value in line.split()[1:]}
    raise AssertionError(f"no Uid line for pid {pid}")


def descendants(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children + [grand for child in children for grand in descendants(child)]


def test_image_runs_orders_service_serve_as_uid_10001_by_default(
    image_config: dict[str, Any],
) -> None:
    config = image_config["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["orders-service"]
    assert config["Cmd"] == ["serve"]
    assert {"5001/tcp", "9102/tcp"} <= set(config["ExposedPorts"])
    assert {"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"} <= set(config["Env"])


def test_image_carries_oci_labels(image_config: dict[str, Any]) -> None:
    labels = image_config["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "orders-service"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.revision"] == "pytest"
    assert labels["org.opencontainers.image.version"] == "0.0.0-pytest"


def test_image_metadata_and_history_hold_no_secret(image: BuiltImage) -> None:
    inspected = podman("image", "inspect", image.tag).stdout
    history = podman("history", "--no-trunc", "--format=json", image.tag).stdout
    env_names = [entry.split("=", 1)[0] for entry in json.loads(inspected)[0]["Config"]["Env"]]
    assert not [name for name in env_names if SECRET_WORDS.search(name)]
    for text in (inspected, history):
        assert not URL_CREDENTIALS.search(text)
        assert "ORDERS_DATABASE" not in text
        assert "ORDERS_REDIS" not in text


def test_build_context_is_only_pyproject_readme_and_service(image: BuiltImage) -> None:
    """.dockerignore is an allow-list: no .venv, .tools, .run (generated passwords) or .git."""
    build_stage = (
        podman(
            "build",
            "--network=host",
            "--target=build",
            "--quiet",
            f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
            str(ROOT),
            timeout=280,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    try:
        listing = podman(
            "run", "--rm", "--network=none", "--entrypoint=ls", build_stage, "-A", "/src"
        ).stdout.split()
    finally:
        podman("rmi", "--force", build_stage, check=False)
    # `pip install .` leaves setuptools' build/ and *.egg-info beside the sources it was given.
    sources = [name for name in listing if name != "build" and not name.endswith(".egg-info")]
    assert sorted(sources) == ["README.md", "pyproject.toml", "service"]


def run_in_image(image: BuiltImage, entrypoint: str, *args: str) -> str:
    """A one-off command in the image, with no network and a read-only root."""
    command = ("run", "--rm", "--network=none", "--read-only", f"--entrypoint={entrypoint}")
    return podman(*command, image.tag, *args).stdout


def test_runtime_image_holds_the_installed_service_but_no_pip_and_no_sources(
    image: BuiltImage,
) -> None:
    script = "import importlib.util as u; print(u.find_spec('pip'), u.find_spec('service').origin)"
    pip_spec, service_origin = run_in_image(image, "python3", "-c", script).split()
    assert pip_spec == "None"
    assert service_origin == "/opt/app/service/__init__.py"
    assert run_in_image(image, "sh", "-c", "test -e /src && echo present || echo absent") == (
        "absent\n"
    )


def test_page_99_is_served_with_orders_981_to_990(server: Running) -> None:
    response = requests.get(server.url("/orders/99"), timeout=10)
    assert response.status_code == 200, server.logs()
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert [order["id"] for order in body["orders"]] == list(range(981, 991))
    assert body["total_orders"] == 1000


def test_ready_with_mysql_and_redis_reached_from_inside_the_container(server: Running) -> None:
    response = requests.get(server.url("/readyz"), timeout=10)
    assert response.status_code == 200, server.logs()
    assert response.json()["status"] == "ok", response.text


def test_second_read_of_a_page_is_a_cache_hit_under_the_runs_prefix(
    server: Running, deployment: Deployment
) -> None:
    for _ in range(2):
        response = requests.get(server.url("/orders/42"), timeout=10)
        assert response.status_code == 200, server.logs()
    assert response.headers["X-Cache"] == "HIT"
    prefix = deployment.env["ORDERS_CACHE_PREFIX"]
    client = redis.Redis.from_url(SHARED_REDIS)
    try:
        assert next(client.scan_iter(match=f"{prefix}:*", count=1000), None) is not None
    finally:
        client.close()


def test_metrics_are_served_and_aggregated_across_workers(server: Running) -> None:
    """The multiprocess metrics directory lives on the /tmp tmpfs: the read-only root is enough."""
    requests.get(server.url("/orders/99"), timeout=10).raise_for_status()
    response = requests.get(server.url("/metrics"), timeout=10)
    assert response.status_code == 200, server.logs()
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE " in response.text
    route_template = re.compile(r"/orders/<(int:)?page>")
    assert route_template.search(response.text), "no sample labelled by the route template"


def test_every_process_runs_as_uid_10001(server: Running) -> None:
    pid = server.host_pid()
    pids = [pid, *descendants(pid)]
    assert len(pids) >= 3, "expected gunicorn's arbiter and two workers"
    assert {uid for p in pids for uid in process_uids(p)} == {10001}


def test_pid_1_is_the_service_itself_not_a_shell(server: Running) -> None:
    """Exec-form ENTRYPOINT: SIGTERM from the kubelet reaches the service, not /bin/sh."""
    argv = Path(f"/proc/{server.host_pid()}/cmdline").read_bytes().split(b"\0")
    assert b"orders-service" in b" ".join(argv) or b"gunicorn" in b" ".join(argv), argv
    assert not argv[0].endswith(b"sh")


def test_root_filesystem_is_read_only_and_only_tmp_is_writable(server: Running) -> None:
    denied = podman("exec", server.name, "touch", "/opt/venv/probe", check=False)
    assert denied.returncode != 0
    assert "Read-only file system" in denied.stderr
    podman("exec", server.name, "sh", "-c", 'touch "${TMPDIR:-/tmp}/probe"')


def test_sigterm_stops_the_service_gracefully_within_its_timeout(server: Running) -> None:
    """Runs last in this module: `podman stop` sends SIGTERM, as the kubelet does."""
    start = time.monotonic()
    podman("stop", "--time=40", server.name, timeout=60)
    elapsed = time.monotonic() - start
    exit_code = int(podman("inspect", "--format={{.State.ExitCode}}", server.name).stdout)
    assert exit_code == 0, f"exit {exit_code} after {elapsed:.1f} s:\n{server.logs()}"
    assert elapsed < 30, "SIGTERM was not handled: podman had to kill the container"
