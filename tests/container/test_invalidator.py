"""The image's second role: `orders-service invalidate` follows the binlog from its own read-only
container and invalidates what the `serve` container cached, as the chart's two Deployments do.

The machine's shared MariaDB has no binlog, so this uses the throwaway binlog MariaDB of
tests/support (a session fixture shared with the fault tests).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.container.conftest import (
    BuiltImage,
    Deployment,
    Running,
    containers_for,
    free_port,
    podman,
    service_env,
)
from tests.support.servers import Database

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def binlog_deployment(image: BuiltImage, binlog_database: Database) -> Iterator[Deployment]:
    prefix = f"orders_ctest_{uuid.uuid4().hex[:10]}"
    port = free_port()
    deployed = Deployment(image.tag, service_env(binlog_database.url, prefix, port), port)
    with containers_for(deployed):
        deployed.run_once("migrate")
        deployed.run_once("seed", "--orders", "50")
        yield deployed


def test_invalidator_container_serves_health_and_metrics_and_stops_on_sigterm(
    binlog_deployment: Deployment,
) -> None:
    """As PID 1 the process gets no default signal handling: it must handle SIGTERM itself."""
    metrics_port = free_port()
    binlog_deployment.env["ORDERS_INVALIDATOR_METRICS_PORT"] = str(metrics_port)
    invalidator = Running(binlog_deployment.start("invalidate"), metrics_port).wait_healthy()
    response = requests.get(invalidator.url("/metrics"), timeout=10)
    assert response.status_code == 200, invalidator.logs()
    assert "# TYPE " in response.text

    start = time.monotonic()
    podman("stop", "--time=30", invalidator.name, timeout=60)
    elapsed = time.monotonic() - start
    exit_code = int(podman("inspect", "--format={{.State.ExitCode}}", invalidator.name).stdout)
    assert exit_code == 0, f"exit {exit_code} after {elapsed:.1f} s:\n{invalidator.logs()}"
    assert elapsed < 15, "SIGTERM was not handled: podman had to kill the container"


def test_an_update_committed_in_mysql_reaches_readers_through_the_invalidator_container(
    binlog_deployment: Deployment, binlog_database: Database
) -> None:
    binlog_deployment.env["ORDERS_INVALIDATOR_METRICS_PORT"] = str(free_port())
    invalidator = Running(
        binlog_deployment.start("invalidate"),
        int(binlog_deployment.env["ORDERS_INVALIDATOR_METRICS_PORT"]),
    ).wait_healthy()
    server = Running(binlog_deployment.start("serve"), binlog_deployment.port).wait_healthy()

    def first_customer() -> tuple[str, str]:
        response = requests.get(server.url("/orders/1"), timeout=10)
        assert response.status_code == 200, server.logs()
        return response.json()["orders"][0]["customer"]["name"], response.headers["X-Cache"]

    first_customer()
    assert first_customer()[1] == "HIT"
    binlog_database.execute("UPDATE orders SET customer_name = 'Renamed In Container' WHERE id = 1")

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if first_customer()[0] == "Renamed In Container":
            return
        time.sleep(0.2)
    pytest.fail(f"page 1 still stale after 20 s; invalidator logs:\n{invalidator.logs()}")
