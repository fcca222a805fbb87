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
import os
import select
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.support.servers import ProcessServer, RedisServer, ServerStartError, free_port
from tests.support.waiting import wait_for

MASTER = "orders-cache"
DOWN_AFTER_MS = 500
REDIS_BINARY = os.environ.get("ORDERS_TEST_REDIS_SERVER", "redis-server")


def redis_binary() -> str:
    found = shutil.which(REDIS_BINARY) or shutil.which(REDIS_BINARY, path="/usr/sbin:/sbin")
    if found is None:
        raise ServerStartError(f"`{REDIS_BINARY}` is not on PATH (ORDERS_TEST_REDIS_SERVER)")
    return found


class Redis(RedisServer):
    """A throwaway Redis started with ``ORDERS_TEST_REDIS_SERVER``'s binary."""

    def command(self) -> list[str]:
        return [redis_binary(), *super().command()[1:]]


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
        return [redis_binary(), str(self.conf), "--sentinel"]

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


class _Pair:
    """One forwarded connection; ``replication``: a replica's link (it sent PSYNC/REPLCONF)."""

    def __init__(self) -> None:
        self.replication = False


class Forwarder:
    """Forwards 127.0.0.1:port to 127.0.0.1:target; ``hold()`` keeps what either side sends
    (reading it, so a closed side is still noticed: then what was held is dropped, never
    delivered), ``hold_replication()`` only that of replicas' links (the Sentinels' and
    clients' connections through it go on); ``retarget()`` moves new connections elsewhere and
    drops the current ones."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.port = port or free_port()
        self.target = target
        self._held = threading.Event()
        self._held_replication = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", self.port))
        self._listener.listen(128)
        self._listener.settimeout(0.1)
        threading.Thread(target=self._accept, name=f"forward-{self.port}", daemon=True).start()

    def hold(self) -> None:
        self._held.set()

    def hold_replication(self) -> None:
        self._held_replication.set()

    def release(self) -> None:
        self._held.clear()
        self._held_replication.clear()

    def retarget(self, target: int) -> None:
        """Send new connections to ``target``; cut the current ones (clients reconnect)."""
        self.target = target
        self.cut()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            pair = _Pair()
            for src, dst, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, pair, outbound), daemon=True
                ).start()

    def _holding(self, pair: _Pair) -> bool:
        return self._held.is_set() or (pair.replication and self._held_replication.is_set())

    def _pump(self, src: socket.socket, dst: socket.socket, pair: _Pair, outbound: bool) -> None:
        pending = bytearray()
        try:
            while not self._closed.is_set():
                ready, _, _ = select.select([src], [], [], 0.02)
                if ready:
                    data = src.recv(65536)
                    if not data:
                        break  # held bytes are dropped: the other side never gets them
                    pending += data
                    if outbound and (b"PSYNC" in data.upper() or b"REPLCONF" in data.upper()):
                        pair.replication = True
                if pending and not self._holding(pair):
                    dst.sendall(pending)
                    pending.clear()
        except (OSError, ValueError):
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()


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
    """Primary, replica, three Sentinels, and ``front``. The primary's address, for the
    replica and the Sentinels alike, is ``link`` (a Sentinel would otherwise point a replica
    that replicates through a forwarder back at the primary's own port): holding the link
    holds only the replica's replication traffic."""

    def __init__(self) -> None:
        self.primary = Redis.create(extra_args=("--repl-diskless-sync-delay", "0"))
        self.link = Forwarder(self.primary.port)
        self.replica = Redis.create(
            extra_args=(
                "--replicaof",
                "127.0.0.1",
                str(self.link.port),
                "--repl-diskless-sync-delay",
                "0",
            )
        )
        self.front = Forwarder(self.primary.port)
        self.sentinels = [
            SentinelServer(Path(tempfile.mkdtemp(prefix="sentinel-")), free_port(), self.link.port)
            for _ in range(3)
        ]
        for sentinel in self.sentinels:
            sentinel.start()
        self._following = threading.Event()

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

        def sentinels_agree() -> bool:
            for sentinel in self.sentinels:
                state = sentinel.client().sentinel_master(MASTER)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
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

    def wait_sentinel_promotion(self, timeout: float = 30.0) -> float:
        """Until every Sentinel names the replica as the primary; returns the seconds it took."""

        def promoted() -> bool:
            if self.client(self.replica).info("replication")["role"] != "master":
                return False
            live = [i for i, sentinel in enumerate(self.sentinels) if sentinel.running]
            return all(self.master_port(i) == self.replica.port for i in live)

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
        for forwarder in (self.front, self.link):
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
