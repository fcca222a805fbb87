"""A Redis primary, a replica and three Sentinels, with the faults a failover test needs.

- The replica replicates through ``link``, a TCP forwarder in this process that can *hold* the
  replication traffic (a lagging replica's link): writes the primary acknowledged are then not
  on the replica, and killing the primary loses them, deterministically.
- ``front`` is the address a service may use instead of the Sentinels: a forwarder that moves to
  the promoted replica (as a proxy, or a Kubernetes Service selecting the primary, does).
  ``follow_sentinels()`` moves it when the Sentinels promote; ``promote_by_hand()`` promotes with
  ``REPLICAOF NO ONE`` at once and moves it.
- ``sentinel_url`` is the ``redis+sentinel://`` URL of the three Sentinels.

Every server is a ``ProcessServer`` (tests/support/servers.py) on a free port, killed at close;
the binary is ``ORDERS_TEST_REDIS_SERVER`` (default ``redis-server``; Valkey's works the same).
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.support.forwarder import Forwarder
from tests.support.servers import ProcessServer, RedisServer, free_port, redis_server_binary
from tests.support.waiting import wait_for

MASTER = "orders-cache"
DOWN_AFTER_MS = 500


class SentinelServer(ProcessServer):
    """``redis-server sentinel.conf --sentinel`` watching ``MASTER`` at ``primary_port``."""

    name = "redis-sentinel"
    start_timeout = 15.0

    def __init__(self, workdir: Path, port: int, primary_port: int) -> None:
        super().__init__(workdir, port, owns_workdir=True)
        self.conf = workdir / "sentinel.conf"
        self.conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} 3000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )

    def command(self) -> list[str]:
        return [redis_server_binary(), str(self.conf), "--sentinel"]

    def is_ready(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), 0.2) as s,
        ):
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)


def _one_command(buffer: bytes) -> tuple[bytes, bytes] | None:
    """The first whole RESP command in ``buffer`` (its words joined) and the rest, or None."""
    if not buffer.startswith(b"*"):
        line, sep, rest = buffer.partition(b"\r\n")
        return (line, rest) if sep else None
    head, sep, rest = buffer.partition(b"\r\n")
    if not sep:
        return None
    words = []
    for _ in range(int(head[1:])):
        size, sep, rest = rest.partition(b"\r\n")
        length = int(size[1:]) if sep else -1
        if length < 0 or len(rest) < length + 2:
            return None
        words.append(rest[:length])
        rest = rest[length + 2 :]
    return b" ".join(words), rest


class LyingSentinel:
    """Answers ``SENTINEL MASTERS`` naming ``port`` as ``MASTER``'s primary, whatever is true
    (a Sentinel cut off from its peers, or misconfigured); every other command but PING is an
    error. A thread of this process on a free port."""

    def __init__(self, port: int) -> None:
        self.named = port
        self._resp3 = False
        self.port = free_port()
        self._closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        threading.Thread(target=self._serve, name="lying-sentinel", daemon=True).start()

    def _answer(self, command: bytes) -> bytes:
        words = command.upper()
        if words.startswith(b"HELLO"):  # redis-py speaks RESP3: answer as a Redis 7 would
            self._resp3 = b" 3" in words
            hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"
            return hello if self._resp3 else b"+OK\r\n"
        if b"PING" in words:
            return b"+PONG\r\n"
        if b"SENTINEL" in words and b"MASTERS" in words:
            fields = {
                "name": MASTER,
                "ip": "127.0.0.1",
                "port": str(self.named),
                "runid": "0" * 40,
                "flags": "master",
                "num-slaves": "1",
                "num-other-sentinels": "2",
                "quorum": "2",
            }
            flat = [item for pair in fields.items() for item in pair]
            body = b"".join(b"$%d\r\n%s\r\n" % (len(x), x.encode()) for x in flat)
            if self._resp3:
                return b"*1\r\n%%%d\r\n%s" % (len(fields), body)
            return b"*1\r\n*%d\r\n%s" % (len(flat), body)
        return b"-ERR this Sentinel only lies about the primary\r\n"

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError), conn:
            while not self._closed.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while (taken := _one_command(buffer)) is not None:
                    command, buffer = taken
                    conn.sendall(self._answer(command))

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()


class SentinelGroup:
    """Two Redis servers (``primary`` and ``replica``), three Sentinels, and ``front``.

    Each server is known, to the other and to the Sentinels, only by its own forwarder (its
    ``links`` entry; the replica announces its forwarder's port): holding the primary's link
    holds the replica's replication traffic alone, and no Sentinel repoints a replica past it
    (it would, seeing a replica of an address that is not the primary's). ``rejoin()`` brings a
    killed primary back as the replica of the new one, so failovers can be repeated."""

    def __init__(self) -> None:
        first = RedisServer.create(extra_args=("--repl-diskless-sync-delay", "0"))
        self.links: dict[int, Forwarder] = {first.port: Forwarder(first.port)}
        self.primary = first
        second_port = free_port()
        self.links[second_port] = Forwarder(second_port)
        self.replica = RedisServer.create(
            port=second_port, extra_args=self._replica_args(second_port)
        )
        self.front = Forwarder(self.primary.port)
        self.sentinels = [
            SentinelServer(Path(tempfile.mkdtemp(prefix="sentinel-")), free_port(), self.link.port)
            for _ in range(3)
        ]
        for sentinel in self.sentinels:
            sentinel.start()
        self._following = threading.Event()

    def _replica_args(self, port: int) -> tuple[str, ...]:
        """A replica of the primary's forwarder, announcing its own forwarder."""
        return (
            *("--replicaof", "127.0.0.1", str(self.link.port)),
            *("--replica-announce-ip", "127.0.0.1"),
            *("--replica-announce-port", str(self.links[port].port)),
            *("--repl-diskless-sync-delay", "0"),
        )

    @property
    def link(self) -> Forwarder:
        """The primary's address (its forwarder)."""
        return self.links[self.primary.port]

    @classmethod
    def create(cls) -> SentinelGroup:
        group = cls()
        try:
            group.wait_ready()
        except BaseException:
            group.close()
            raise
        return group

    # ---- addresses ----------------------------------------------------------------------------
    @property
    def sentinel_url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{MASTER}"

    @property
    def front_url(self) -> str:
        return f"redis://127.0.0.1:{self.front.port}/0"

    def master_port(self, sentinel: int | None = None) -> int:
        """The primary's port as one Sentinel (default: the first one running) tells it."""
        if sentinel is None:
            sentinel = next(i for i, s in enumerate(self.sentinels) if s.running)
        _, port = self.sentinels[sentinel].client().sentinel_get_master_addr_by_name(MASTER)
        return int(port)

    def client(self, server: RedisServer) -> redis.Redis:
        return redis.Redis(port=server.port, socket_timeout=2)

    # ---- readiness ----------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 60.0) -> None:
        """The replica in sync, and every Sentinel knowing it and the two other Sentinels."""
        wait_for(self.replica_in_sync, timeout, "the replica to sync")

        replica_at = self.links[self.replica.port].port

        def sentinels_agree() -> bool:
            for sentinel in (s for s in self.sentinels if s.running):
                client = sentinel.client()
                state = client.sentinel_master(MASTER)
                if int(state["num-other-sentinels"]) < 2 or int(state["port"]) != self.link.port:
                    return False
                replicas = client.sentinel_slaves(MASTER)
                if not any(
                    int(r["port"]) == replica_at and not (r["is_sdown"] or r["is_disconnected"])
                    for r in replicas
                ):
                    return False
            return True

        wait_for(sentinels_agree, timeout, "the Sentinels to know the replica and each other")

    def replica_in_sync(self) -> bool:
        info = self.client(self.replica).info("replication")
        if info.get("master_link_status") != "up":
            return False
        primary = self.client(self.primary).info("replication")
        return bool(info["slave_repl_offset"] >= primary["master_repl_offset"])

    # ---- faults -------------------------------------------------------------------------------
    def hold_replica_link(self) -> None:
        """From now on the replica receives nothing the primary writes (until released)."""
        self.link.hold_replication()

    def release_replica_link(self) -> None:
        self.link.release()

    def kill_primary(self) -> None:
        """SIGKILL the primary; what the held link kept is dropped with it."""
        self.primary.kill()

    def promote_by_hand(self) -> None:
        """``REPLICAOF NO ONE`` on the replica at once, and ``front`` moved to it."""
        self.client(self.replica).replicaof("NO", "ONE")
        self.front.retarget(self.replica.port)

    def rejoin(self, timeout: float = 60.0) -> None:
        """After a promotion: the killed primary restarted (empty) as the replica of the new
        one; the two swap names, and this returns once the group is ready again."""
        old = self.primary
        self.primary, self.replica = self.replica, old
        self.link.release()
        self.links[old.port].release()
        old.extra_args = self._replica_args(old.port)
        old.start()
        self.wait_ready(timeout)

    def wait_sentinel_promotion(self, timeout: float = 30.0) -> float:
        """Until every Sentinel names the replica as the primary; returns the seconds it took."""

        def promoted() -> bool:
            if self.client(self.replica).info("replication")["role"] != "master":
                return False
            live = [i for i, sentinel in enumerate(self.sentinels) if sentinel.running]
            named = self.links[self.replica.port].port
            return all(self.master_port(i) == named for i in live)

        return wait_for(promoted, timeout, "the Sentinels to promote the replica")

    def follow_sentinels(self) -> None:
        """Move ``front`` to whatever the Sentinels name as the primary, until close()."""
        self._following.set()

        def follow() -> None:
            while self._following.is_set():
                with contextlib.suppress(redis.RedisError, OSError, ValueError, TypeError):
                    port = self.master_port()
                    if port != self.front.target:
                        self.front.retarget(port)
                time.sleep(0.02)  # a poll, as a role-labelling controller would do

        threading.Thread(target=follow, name="front-follows-sentinels", daemon=True).start()

    # ---- cleanup ------------------------------------------------------------------------------
    def close(self) -> None:
        self._following.clear()
        for forwarder in (self.front, *self.links.values()):
            forwarder.close()
        for server in (*self.sentinels, self.replica, self.primary):
            with contextlib.suppress(Exception):
                server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
