"""A throwaway six-node Redis Cluster (three primaries, one replica each) for tests and the bench.

Every node is a private ``redis-server --cluster-enabled yes`` on a free loopback port (the binary
from ``ORDERS_TEST_REDIS_SERVER``, so the Valkey tier runs the same tests); ``redis-cli --cluster``
creates the cluster and moves slots (``reshard``), and a node is killed, paused or failed over by
its own handle. Nothing here imports pytest; ``RedisCluster.create()`` is a context manager and
every process is reaped by PID (``ProcessServer``), also at interpreter exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.support.servers import RedisServer, ServerStartError, free_port, require_tool
from tests.support.waiting import wait_for

__all__ = ["ClusterNode", "RedisCluster"]

SLOTS = 16384


def cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too (so at most 55535)."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


# A replica fails over however long ago it last heard its primary, and the first full sync
# starts at once (the default waits 5 s for more replicas to share it).
_CLUSTER_ARGS = (
    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
    *("--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"),
    *("--repl-diskless-sync-delay", "0"),
)


class ClusterNode(RedisServer):
    """One cluster node: its own work dir (``nodes.conf`` survives a restart), no persistence."""

    name = "redis-cluster-node"

    def __init__(self, workdir: Path, port: int, extra_args: Sequence[str] = ()) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(
            workdir, port, owns_workdir=False, extra_args=(*_CLUSTER_ARGS, *extra_args)
        )

    def client(self, **options: object) -> redis.Redis:
        """A plain (non-cluster) connection to this node alone."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2, **options
        )

    @property
    def node_id(self) -> str:
        return str(self.client(decode_responses=True).execute_command("CLUSTER MYID"))

    def synced(self) -> bool:
        """A replica whose link to its primary is up (its first full sync done)."""
        info = self.client(decode_responses=True).info("replication")
        return info.get("master_link_status") == "up"

    def role(self) -> str:
        """``master`` or ``slave`` as this node says (``ROLE``)."""
        answer = self.client().execute_command("ROLE")
        kind = answer[0]
        return kind.decode() if isinstance(kind, bytes) else str(kind)


@dataclass
class RedisCluster:
    """Six nodes in one cluster; ``nodes[i]`` keeps its handle across kills and failovers."""

    root: Path
    nodes: list[ClusterNode]

    @classmethod
    def create(
        cls, *, primaries: int = 3, replicas: int = 1, timeout: float = 60.0
    ) -> RedisCluster:
        root = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        nodes = [
            ClusterNode(root / f"node{i}", cluster_port())
            for i in range(primaries * (1 + replicas))
        ]
        cluster = cls(root, nodes)
        try:
            for node in nodes:
                node.start()
            cluster._cli(
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
                timeout=timeout,
            )
            cluster.wait_ok(timeout)
            wait_for(
                lambda: (
                    len(cluster.primaries()) == primaries
                    and all(len(cluster.replicas_of(p)) == replicas for p in cluster.primaries())
                    and all(n.synced() for n in nodes if n.role() == "slave")
                ),
                timeout,
                "every replica attached to its primary and synced",
            )
        except BaseException:
            cluster.close()
            raise
        return cluster

    # ---- addresses -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The service's URL for this cluster (every node a seed)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes if node.running]

    def client(self, **options: object) -> redis.RedisCluster:
        """A redis-py cluster client on the live nodes (for tests that look underneath)."""
        from redis.cluster import ClusterNode as Seed

        from service.cache.topology import _Cluster

        return _Cluster(
            startup_nodes=[Seed(host, port) for host, port in self.startup_nodes],
            socket_timeout=5,
            socket_connect_timeout=5,
            **options,
        )

    def live(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.running and not node.paused]

    def _by_port(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise KeyError(port)

    def _view(self) -> list[tuple[ClusterNode, str, str, list[tuple[int, int]]]]:
        """CLUSTER NODES as a live node sees it: (node, id, 'master' or 'slave <id>', slots)."""
        parsed = self.live()[0].client(decode_responses=True).execute_command("CLUSTER NODES")
        rows = []
        for address, fields in parsed.items():
            flags = fields["flags"].split(",")
            if "fail" in flags or "noaddr" in flags:
                continue
            try:
                node = self._by_port(int(address.split("@")[0].rsplit(":", 1)[1]))
            except (KeyError, ValueError):
                continue
            role = "master" if "master" in flags else f"slave {fields['master_id']}"
            slots = [(int(pair[0]), int(pair[-1])) for pair in fields["slots"]]
            rows.append((node, fields["node_id"], role, slots))
        return rows

    def primaries(self) -> list[ClusterNode]:
        """Live primaries that serve at least one slot."""
        return [n for n, _, role, slots in self._view() if role == "master" and slots and n.running]

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        ids = {n.port: node_id for n, node_id, _, _ in self._view()}
        master_id = ids.get(primary.port)
        return [n for n, _, role, _ in self._view() if role == f"slave {master_id}" and n.running]

    def slot_owner(self, slot: int) -> ClusterNode:
        for node, _, role, slots in self._view():
            if role == "master" and any(first <= slot <= last for first, last in slots):
                return node
        raise LookupError(f"no primary serves slot {slot}")

    def keyslot(self, key: str) -> int:
        return int(self.live()[0].client().execute_command("CLUSTER KEYSLOT", key))

    # ---- state ---------------------------------------------------------------------------------
    def ok(self) -> bool:
        """Every live node says ``cluster_state:ok`` and agrees all 16384 slots are served."""
        for node in self.live():
            info = node.client(decode_responses=True).execute_command("CLUSTER INFO")
            if info["cluster_state"] != "ok" or int(info["cluster_slots_ok"]) != SLOTS:
                return False
        return True

    def wait_ok(self, timeout: float = 60.0) -> float:
        return wait_for(self.ok, timeout, "cluster_state:ok on every live node", interval=0.1)

    # ---- faults and operations -----------------------------------------------------------------
    def reshard(
        self, source: ClusterNode, target: ClusterNode, slots: int, timeout: float = 120.0
    ) -> None:
        """Move ``slots`` slots (with their keys) from ``source`` to ``target`` (redis-cli)."""
        self._cli(
            "--cluster",
            "reshard",
            f"127.0.0.1:{target.port}",
            "--cluster-from",
            source.node_id,
            "--cluster-to",
            target.node_id,
            "--cluster-slots",
            str(slots),
            "--cluster-yes",
            "--cluster-pipeline",
            "50",
            timeout=timeout,
        )

    def reshard_async(
        self, source: ClusterNode, target: ClusterNode, slots: int
    ) -> subprocess.Popen[bytes]:
        """``reshard`` in the background (readers and writers run meanwhile); wait on the handle."""
        return subprocess.Popen(
            [
                require_tool("redis-cli"),
                "--cluster",
                "reshard",
                f"127.0.0.1:{target.port}",
                "--cluster-from",
                source.node_id,
                "--cluster-to",
                target.node_id,
                "--cluster-slots",
                str(slots),
                "--cluster-yes",
                "--cluster-pipeline",
                "10",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def kill_primary(self, primary: ClusterNode, timeout: float = 60.0) -> ClusterNode:
        """SIGKILL a primary and wait until its replica took its slots; returns the new primary."""
        replicas = self.replicas_of(primary)
        if not replicas:
            raise LookupError(f"primary :{primary.port} has no replica to promote")
        primary.kill()
        wait_for(
            lambda: any(r.role() == "master" for r in replicas) and self.ok(),
            timeout,
            f"a replica of :{primary.port} promoted and the cluster ok",
            interval=0.1,
        )
        return next(r for r in replicas if r.role() == "master")

    def failover(self, replica: ClusterNode, timeout: float = 60.0) -> None:
        """``CLUSTER FAILOVER`` on a replica (a coordinated switch, no write lost)."""
        replica.client().execute_command("CLUSTER FAILOVER")
        wait_for(
            lambda: replica.role() == "master" and self.ok(),
            timeout,
            f"replica :{replica.port} promoted by CLUSTER FAILOVER",
            interval=0.1,
        )

    def rejoin(self, node: ClusterNode, timeout: float = 60.0) -> None:
        """Start a killed node again; it comes back as a replica of whoever took its slots."""
        node.start()
        wait_for(lambda: node.role() == "slave" and self.ok(), timeout, f":{node.port} rejoined")

    def _cli(self, *args: str, timeout: float) -> str:
        done = subprocess.run(
            [require_tool("redis-cli"), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServerStartError(
                f"redis-cli {' '.join(args[:2])} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')[-2000:]}"
                f"{done.stdout.decode(errors='replace')[-2000:]}"
            )
        return done.stdout.decode(errors="replace")

    # ---- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        for node in self.nodes:
            node.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
