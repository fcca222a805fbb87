"""A throwaway MariaDB primary with GTID replicas: lag on demand, kill the primary, promote.

Built on `servers.MariaDBServer`: every server is a private `mariadbd` on a spare port with the
binlog the invalidator needs plus `--log-slave-updates` (a replica's binlog holds the primary's
transactions under their original GTIDs, so it can be promoted and followed by GTID) and
`--gtid-strict-mode` (a server refuses a binlog dump from a GTID that is not in its history).
Replicas follow with `MASTER_USE_GTID=slave_pos`. Nothing here imports pytest: tests, the bench
and one-off scripts use it alike (`with ReplicationSet.create(replicas=2) as rs: ...`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.forwarder import Forwarder
from tests.support.servers import Database, MariaDBServer

__all__ = [
    "SEMISYNC_OPTIONS",
    "Endpoint",
    "ReplicationSet",
    "gtid_options",
    "parse_gtid_list",
]


def gtid_options(server_id: int) -> tuple[str, ...]:
    """The options every member runs with (later options win over `BINLOG_OPTIONS`' id)."""
    return (
        f"--server-id={server_id}",
        "--log-slave-updates=ON",
        "--gtid-strict-mode=ON",
        "--gtid-domain-id=0",
        "--relay-log=relay-bin",
        "--skip-slave-start",  # a restarted replica resumes only when the harness says so
        "--slave-net-timeout=5",  # a killed primary is noticed in seconds, not an hour
    )


# Semi-synchronous replication, AFTER_SYNC: a commit becomes visible (and is acknowledged to
# its client) only once a replica received it, so a failover to the most advanced replica
# loses no transaction anyone could have read. On every member, since any may be promoted;
# a primary with no semi-sync replica left does not wait.
SEMISYNC_OPTIONS: tuple[str, ...] = (
    "--rpl-semi-sync-master-enabled=ON",
    "--rpl-semi-sync-slave-enabled=ON",
    "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
    "--rpl-semi-sync-master-timeout=30000",
    "--rpl-semi-sync-master-wait-no-slave=OFF",
)


def parse_gtid_list(text: str) -> dict[int, tuple[int, int]]:
    """MariaDB's `domain-server-seq[,...]` as {domain: (server, seq)} ('' is empty)."""
    state: dict[int, tuple[int, int]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        domain, server, seq = (int(field) for field in item.split("-"))
        state[domain] = (server, seq)
    return state


def _scalar(server: MariaDBServer, sql: str, args: Sequence[Any] = ()) -> Any:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return None if row is None else row[0]


def _execute(server: MariaDBServer, *statements: str) -> None:
    with server.connect() as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def _slave_status(server: MariaDBServer) -> dict[str, Any]:
    with server.connect() as conn, conn.cursor() as cur:
        cur.execute("SHOW SLAVE STATUS")
        row = cur.fetchone()
        if row is None:
            return {}
        names = [column[0] for column in cur.description]
        return dict(zip(names, row, strict=True))


class Endpoint(MariaDBServer):
    """The primary's address as clients keep it (a forwarder that `promote()` moves): speaks
    to whichever server is primary now. Never started or stopped itself."""

    name = "endpoint"

    def __init__(self, forwarder: Forwarder) -> None:
        super().__init__(Path(tempfile.gettempdir()), forwarder.port, owns_workdir=False)
        self.forwarder = forwarder

    def start(self, timeout: float | None = None) -> Self:
        raise RuntimeError("the endpoint forwards to the primary; start the servers instead")

    def close(self) -> None:
        self.forwarder.close()

    def database(self, name: str) -> Database:
        """A database of the primary, reached through this address."""
        return Database(self, name)


class ReplicationSet:
    """One primary and N replicas replicating by GTID; `primary` moves on `promote()`.

    Every server keeps its handle (and port) for the whole life of the set, so a test can
    kill the old primary, promote a replica, and later restart the old one as a stray server.
    """

    def __init__(
        self,
        primary: MariaDBServer,
        replicas: Sequence[MariaDBServer],
        member_args: Sequence[str] = (),
    ) -> None:
        self.primary = primary
        self._member_args = tuple(member_args)  # what create() gave every member
        self._last_id = 0
        self.replicas: list[MariaDBServer] = list(replicas)
        self.members: list[MariaDBServer] = [primary, *replicas]
        self._endpoint: Endpoint | None = None

    @property
    def endpoint(self) -> Endpoint:
        """The primary's address for clients (the service's ORDERS_DATABASE_URL): it moves to
        the promoted replica on `promote()` and resets the connections it held."""
        if self._endpoint is None:
            self._endpoint = Endpoint(Forwarder(self.primary.port))
        return self._endpoint

    @classmethod
    def create(
        cls,
        *,
        replicas: int = 1,
        extra_args: Sequence[str] = (),
        first_server_id: int = 1,
        semisync: bool = False,
    ) -> ReplicationSet:
        """Start a primary and `replicas` replicas (server ids from `first_server_id`), with
        semi-synchronous replication when `semisync` (`SEMISYNC_OPTIONS`)."""
        servers: list[MariaDBServer] = []
        sync = SEMISYNC_OPTIONS if semisync else ()
        try:
            for index in range(replicas + 1):
                options = (*gtid_options(first_server_id + index), *sync, *extra_args)
                servers.append(MariaDBServer.create(extra_args=options))
            rs = cls(servers[0], servers[1:], (*sync, *extra_args))
            rs._last_id = first_server_id + replicas
            for replica in rs.replicas:
                rs.attach(replica)
            for replica in rs.replicas:
                rs.wait_caught_up(replica)
        except BaseException:
            for server in servers:
                server.close()
            raise
        return rs

    # ---- replication verbs -----------------------------------------------------------------
    def attach(self, replica: MariaDBServer, primary: MariaDBServer | None = None) -> None:
        """Point `replica` at `primary` (default: the current one) by GTID and start it."""
        source = primary or self.primary
        _execute(
            replica,
            "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={source.port}, "
            "MASTER_USER='root', MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1, "
            "MASTER_USE_GTID=slave_pos",
            "START SLAVE",
        )

    def gtid_binlog_pos(self, server: MariaDBServer | None = None) -> str:
        """The last GTID per domain in the server's binlog ('' before any transaction)."""
        return str(_scalar(server or self.primary, "SELECT @@GLOBAL.gtid_binlog_pos") or "")

    def gtid_slave_pos(self, replica: MariaDBServer) -> str:
        return str(_scalar(replica, "SELECT @@GLOBAL.gtid_slave_pos") or "")

    def wait_caught_up(self, replica: MariaDBServer, timeout: float = 30.0) -> None:
        """Block until `replica` applied everything the primary has logged so far."""
        target = self.gtid_binlog_pos()
        if not target:
            return
        waited = _scalar(replica, "SELECT MASTER_GTID_WAIT(%s, %s)", (target, timeout))
        if waited != 0:
            status = _slave_status(replica)
            raise TimeoutError(
                f"replica :{replica.port} did not reach {target} in {timeout:.0f} s "
                f"(applied {self.gtid_slave_pos(replica)!r}, "
                f"IO error {status.get('Last_IO_Error')!r}, "
                f"SQL error {status.get('Last_SQL_Error')!r})"
            )

    def wait_all_caught_up(self, timeout: float = 30.0) -> None:
        for replica in self.replicas:
            self.wait_caught_up(replica, timeout)

    def stop_applying(self, replica: MariaDBServer) -> None:
        """`STOP SLAVE SQL_THREAD`: the replica still receives, but applies nothing (lag)."""
        _execute(replica, "STOP SLAVE SQL_THREAD")

    def start_applying(self, replica: MariaDBServer) -> None:
        _execute(replica, "START SLAVE SQL_THREAD")

    @contextlib.contextmanager
    def lagging(self, replica: MariaDBServer) -> Iterator[None]:
        """Deterministic lag: nothing the primary commits inside the block reaches `replica`."""
        self.stop_applying(replica)
        try:
            yield
        finally:
            self.start_applying(replica)

    def kill_primary(self) -> MariaDBServer:
        """SIGKILL the current primary (the crash case); returns its handle."""
        old = self.primary
        old.kill()
        return old

    def wait_relay_applied(self, replica: MariaDBServer, timeout: float = 30.0) -> None:
        """Wait until `replica` applied everything it received (what a failover tool does
        before promoting; the primary may be dead, so its position cannot be asked)."""
        deadline = time.monotonic() + timeout
        while True:
            received = parse_gtid_list(str(_slave_status(replica).get("Gtid_IO_Pos") or ""))
            applied = parse_gtid_list(self.gtid_slave_pos(replica))
            if all(applied.get(domain) == gtid for domain, gtid in received.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"replica :{replica.port} applied {applied} of received {received}"
                )
            time.sleep(0.02)

    def add_replica(self) -> MariaDBServer:
        """A new, empty member replicating the current primary from the start of its binlog
        (which, with log_slave_updates, holds the whole history), caught up on return."""
        self._last_id = max(
            [self._last_id, *(int(_scalar(m, "SELECT @@server_id")) for m in self.live())]
        )
        self._last_id += 1  # never an id a dead member had: identities stay unique
        server_id = self._last_id
        replica = MariaDBServer.create(extra_args=(*gtid_options(server_id), *self._member_args))
        self.members.append(replica)
        self.replicas.append(replica)
        self.attach(replica)
        self.wait_caught_up(replica, timeout=120)
        return replica

    def live(self) -> list[MariaDBServer]:
        return [member for member in self.members if member.running]

    def most_advanced(self) -> MariaDBServer:
        """The running replica that received the most of the primary's history (the one a
        failover tool promotes)."""
        running = [replica for replica in self.replicas if replica.running]
        if not running:
            raise RuntimeError("no running replica to promote")

        def received(replica: MariaDBServer) -> int:
            state = parse_gtid_list(str(_slave_status(replica).get("Gtid_IO_Pos") or ""))
            return sum(seq for _, seq in state.values())

        return max(running, key=received)

    def promote(self, replica: MariaDBServer) -> MariaDBServer:
        """Make `replica` the primary; every other live replica follows it by GTID.

        As an operator or a failover tool would: let the replica apply what it received,
        detach it (`STOP SLAVE; RESET SLAVE ALL`), make it writable, re-point the others.
        The old primary (dead or alive) is left out of the set's replicas.
        """
        if replica not in self.replicas:
            raise ValueError(f"server :{replica.port} is not a replica of this set")
        self.wait_relay_applied(replica)
        _execute(replica, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0")
        self.replicas.remove(replica)
        self.primary = replica
        if self._endpoint is not None:
            self._endpoint.forwarder.retarget(replica.port)
        for other in self.replicas:
            if other.running:
                self.wait_relay_applied(other)
                self.attach(other, replica)
        return replica

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every member and delete its data dir (by the handles' PIDs; idempotent)."""
        errors: list[BaseException] = []
        if self._endpoint is not None:
            self._endpoint.close()
        for server in self.members:
            try:
                server.close()
            except Exception as exc:  # noqa: BLE001 - close every member, report the first
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        ports = ", ".join(str(replica.port) for replica in self.replicas)
        return f"<ReplicationSet primary :{self.primary.port} replicas [{ports}]>"
