"""The chart's Redis replication (redis.architecture=replication) run as rendered, on real servers.

Each node's two containers are the rendered shell scripts (files/redis-users.acl.sh and
files/redis-node.sh), run locally: three nodes on 127.0.0.2-4 stand in for the pods' DNS names,
the ports are moved off the shared 6379, and /run, /etc and /data become temp dirs. The nodes
start in order (OrderedReady) and agree on node 0 as the primary; the primary is killed, the
Sentinels promote a replica, the service's own client, built from the URL the chart gives the
API, reads through the Sentinels from the new primary as the API's ACL user,
and the killed node restarts as a replica of the new primary (it asks the Sentinels first).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from service.cache import topology
from service.config.urls import RedisURL, redis_url
from tests.support.chart import one, render
from tests.support.servers import free_port, redis_server_binary
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NODES = 3
MASTER_SET = "orders"
PASSWORDS = {
    "redis-password": "admin-pw-1",
    "redis-api-password": "api-pw-2",
    "redis-invalidator-password": "inv-pw-3",
    "redis-sentinel-password": "sentinel-pw-4",
}
RENDERED = render(
    [
        "--set",
        "redis.architecture=replication",
        "--set",
        "redis.replication.downAfterMilliseconds=1000",
        "--set",
        "redis.replication.failoverTimeout=5000",
    ]
)


def address(node: int) -> str:
    return f"127.0.0.{2 + node}"


@dataclass
class Node:
    index: int
    workdir: Path
    data_port: int
    sentinel_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return address(self.index)

    def script(self, container: dict[str, Any]) -> str:
        """The container's script with this machine's paths, ports and server binary."""
        text: str = container["command"][2]
        for old, new in (
            ("26379", str(self.sentinel_port)),
            ("6379", str(self.data_port)),
            ("/run/redis", str(self.workdir / "acl")),
            ("/run/sentinel", str(self.workdir / "sentinel")),
            ("/etc/redis/redis.conf", str(self.workdir / "redis.conf")),
        ):
            text = text.replace(old, new)
        local = f"--bind {self.host} --dir {self.workdir / 'data'}"
        text = text.replace("exec redis-server", f"exec {redis_server_binary()}")
        text = text.replace("--include", f"{local} --include")
        return text.replace("--sentinel", f"--sentinel --bind {self.host}")

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")}
        for item in container["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
            elif "secretKeyRef" in item.get("valueFrom", {}):
                env[item["name"]] = PASSWORDS[item["valueFrom"]["secretKeyRef"]["key"]]
        hosts = " ".join(address(i) for i in range(NODES))
        return {**env, "ORDERS_SELF": self.host, "ORDERS_NODE_HOSTS": hosts}

    def start(self, name: str) -> None:
        spec = one(RENDERED, "StatefulSet", "orders-redis")["spec"]["template"]["spec"]
        container = next(c for c in spec["containers"] if c["name"] == name)
        config = one(RENDERED, "ConfigMap", "orders-redis")["data"]["redis.conf"]
        config = config.replace("6379", str(self.data_port))
        (self.workdir / "redis.conf").write_text(config.replace("dir /data", f"dir {self.workdir}"))
        for sub in ("acl", "sentinel", "data"):
            (self.workdir / sub).mkdir(exist_ok=True)
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                ["sh", "-c", self.script(container)],
                env=self.env(container),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=self.host, port=self.data_port, password=PASSWORDS["redis-password"]
        )

    def sentinel(self) -> redis.Redis:
        return redis.Redis(
            host=self.host,
            port=self.sentinel_port,
            password=PASSWORDS["redis-sentinel-password"],
            decode_responses=True,
        )

    def role(self) -> str:
        with self.client() as client:
            return str(client.execute_command("ROLE")[0], "ascii")

    def logs(self) -> str:
        return "\n".join(
            f"--- node {self.index} {path.name}\n{path.read_text(errors='replace')[-1500:]}"
            for path in sorted(self.workdir.glob("*.log"))
        )


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    data_port, sentinel_port = free_port(), free_port()
    made = [Node(i, tmp_path / f"node{i}", data_port, sentinel_port) for i in range(NODES)]
    for node in made:
        node.workdir.mkdir()
    try:
        yield made
    finally:
        for node in made:
            for name in list(node.processes):
                node.kill(name)


def api_url(nodes: list[Node]) -> RedisURL:
    """The API's ORDERS_REDIS_URL as rendered, with its passwords, pointed at the local nodes."""
    api = one(RENDERED, "Deployment", "orders")["spec"]["template"]["spec"]["containers"][0]
    url = next(e["value"] for e in api["env"] if e["name"] == "ORDERS_REDIS_URL")
    for node in nodes:
        url = url.replace(f"orders-redis-{node.index}.orders-redis.orders.svc", node.host)
    parsed = redis_url(url.replace("26379", str(nodes[0].sentinel_port)))
    assert parsed.topology == "sentinel"
    return replace(
        parsed,
        password=PASSWORDS["redis-api-password"],
        sentinel_password=PASSWORDS["redis-sentinel-password"],
    )


def start_in_order(nodes: list[Node]) -> None:
    """What OrderedReady does: a node's pod is ready (Redis and Sentinel answer) before the next."""
    for node in nodes:
        node.start("redis")
        node.start("sentinel")
        wait_for(lambda n=node: n.client().ping() and n.sentinel().ping(), 30, f"node {node.index}")


def test_nodes_agree_fail_over_and_a_restarted_primary_rejoins_as_a_replica(
    nodes: list[Node], record_property: Callable[[str, object], None]
) -> None:
    try:
        start_in_order(nodes)
        first = nodes[0]
        assert first.role() == "master"

        def settled() -> bool:
            return all(
                n.sentinel().sentinel_master(MASTER_SET)["num-other-sentinels"] == NODES - 1
                and n.sentinel().sentinel_master(MASTER_SET)["num-slaves"] == NODES - 1
                for n in nodes
            )

        wait_for(settled, 60, "every Sentinel to know the two replicas and the other Sentinels")
        assert [n.role() for n in nodes[1:]] == ["slave", "slave"]
        # the cache's functions reach the replicas through replication
        with first.client() as admin:
            admin.set("orders:marker", "before")
            admin.execute_command("WAIT", NODES - 1, 5000)

        first.kill("redis")
        first.kill("sentinel")

        def promoted() -> str:
            answer = nodes[1].sentinel().sentinel_get_master_addr_by_name(MASTER_SET)
            return answer[0] if answer and answer[0] != first.host else ""

        took = wait_for(promoted, 60, "the Sentinels to promote a replica")
        record_property("promotion_seconds", round(took, 2))  # a figure, never asserted
        new_host = promoted()
        new = next(n for n in nodes if n.host == new_host)
        assert new.role() == "master"

        # The service's own client (service/cache/topology.py) from the URL the chart gives the
        # API, pod names swapped for the local nodes: Sentinels with their password, the
        # primary as the API's ACL user (ROLE checked).
        primary = topology.client(api_url(nodes), timeout=2.0)
        wait_for(lambda: primary.get("orders:marker") == b"before", 30, "the API user's read")
        primary.close()

        first.start("redis")
        first.start("sentinel")
        wait_for(lambda: first.role() == "slave", 30, "the old primary to rejoin as a replica")
        with first.client() as client:
            info = client.info("replication")
        assert info["master_host"] == new_host
    except BaseException:
        print("\n".join(n.logs() for n in nodes))
        raise
