"""Where a miss is read: a replica that has applied the lease's GTID state, else the primary.

Fakes for MySQL (the unit tier); the real replicas are in tests/faults/test_replica_reads.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from service.breaker import CircuitBreaker
from service.orders.database import Database, DatabaseUnavailable
from service.orders.replicas import Replica, ReplicaReads


class Cursor:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.last: Any = None

    def execute(self, sql: str, args: Any = None) -> None:
        self.server.statements.append(sql)
        if "GTID" in sql:
            self.last = (0 if self.server.applied else -1,)
        else:
            self.last = (self.server.newest_heartbeat,)

    def fetchone(self) -> Any:
        return self.last


class FakeServer:
    """Stands in for ``Database``: runs ``work`` on a cursor, fails while ``down``."""

    def __init__(self, name: str, *, applied: bool = True, down: bool = False) -> None:
        self.name = name
        self.applied = applied
        self.down = down
        self.statements: list[str] = []
        self.reads = 0
        self.breaker = CircuitBreaker(name, failures=1, reset_after=60)
        self.newest_heartbeat: float | None = 100.0

    def run(self, _query: str, work: Callable[[Any], Any]) -> Any:
        if not self.breaker.allow():
            raise DatabaseUnavailable("open")
        if self.down:
            self.breaker.failure()
            raise DatabaseUnavailable("down")
        self.reads += 1
        result = work(Cursor(self))
        self.breaker.success()
        return result

    def close(self) -> None:
        pass


def reads(primary: FakeServer, *replicas: FakeServer) -> ReplicaReads:
    return ReplicaReads(
        cast(Database, primary),
        [Replica(r.name, cast(Database, r)) for r in replicas],
        wait=0.25,
    )


def where(server: FakeServer) -> Callable[[Any], str]:
    return lambda _cursor: server.name


def test_a_fill_with_a_gtid_state_reads_a_replica_after_waiting_for_it() -> None:
    primary, replica = FakeServer("primary"), FakeServer("r1")
    assert reads(primary, replica).run("page", where(replica), "0-1-5") == "r1"
    assert replica.statements[0] == "SELECT MASTER_GTID_WAIT(%s, %s)"
    assert primary.reads == 0


@pytest.mark.parametrize("state", ["", "-"])
def test_no_state_known_reads_the_primary(state: str) -> None:
    primary, replica = FakeServer("primary"), FakeServer("r1")
    assert reads(primary, replica).run("page", where(primary), state) == "primary"
    assert replica.reads == 0


def test_a_replica_not_there_in_time_leaves_the_read_to_the_primary() -> None:
    primary, replica = FakeServer("primary"), FakeServer("r1", applied=False)
    assert reads(primary, replica).run("page", lambda _c: "read", "0-1-5") == "read"
    assert primary.reads == 1
    assert replica.statements == ["SELECT MASTER_GTID_WAIT(%s, %s)"]  # waited, never read


def test_a_failing_replica_leaves_the_read_to_the_primary_and_is_skipped_after() -> None:
    primary = FakeServer("primary")
    dead, alive = FakeServer("r1", down=True), FakeServer("r2")
    router = reads(primary, dead, alive)
    results = [router.run("page", lambda c: c.server.name, "0-1-5") for _ in range(4)]
    assert results[0] == "primary"  # r1 failed: its breaker opens (failures=1 here)
    assert results[1:] == ["r2", "r2", "r2"]  # r1 skipped while its breaker is open
    assert dead.reads == 0


def test_reads_are_spread_over_the_healthy_replicas() -> None:
    primary, one, two = FakeServer("primary"), FakeServer("r1"), FakeServer("r2")
    router = reads(primary, one, two)
    served = [router.run("page", lambda c: c.server.name, "0-1-5") for _ in range(6)]
    assert sorted(served) == ["r1", "r1", "r1", "r2", "r2", "r2"]


def test_every_replica_down_reads_the_primary_and_its_failure_is_the_only_error() -> None:
    primary = FakeServer("primary")
    router = reads(primary, FakeServer("r1", down=True), FakeServer("r2", down=True))
    assert router.run("page", lambda c: c.server.name, "0-1-5") == "primary"
    primary.down = True
    with pytest.raises(DatabaseUnavailable):
        router.run("page", lambda c: c.server.name, "0-1-5")


def test_lag_is_the_primary_heartbeat_minus_the_replica_one() -> None:
    primary, replica = FakeServer("primary"), FakeServer("r1")
    primary.newest_heartbeat, replica.newest_heartbeat = 110.0, 104.5
    router = reads(primary, replica)
    router.check()
    assert router.status() == [{"replica": "r1", "state": "closed", "lag_seconds": 5.5}]
    replica.down = True
    router.check()
    assert router.status()[0]["state"] == "open"


def test_without_replicas_everything_reads_the_primary() -> None:
    primary = FakeServer("primary")
    assert reads(primary).run("page", lambda c: c.server.name, "0-1-5") == "primary"


def test_a_replica_measured_far_behind_is_not_asked_and_comes_back_when_it_catches_up() -> None:
    """Its wait would time out: the primary reads at once. The lag comes from ``check``."""
    primary, behind, near = FakeServer("primary"), FakeServer("r1"), FakeServer("r2")
    router = reads(primary, behind, near)
    primary.newest_heartbeat, behind.newest_heartbeat, near.newest_heartbeat = 110.0, 100.0, 110.0
    router.check()
    served = [router.run("page", lambda c: c.server.name, "0-1-5") for _ in range(4)]
    assert served == ["r2"] * 4
    assert behind.statements == ["SELECT UNIX_TIMESTAMP(MAX(written_at)) FROM heartbeat"]
    near.newest_heartbeat = 90.0
    router.check()
    assert router.run("page", lambda c: c.server.name, "0-1-5") == "primary"  # no wait at all
    behind.newest_heartbeat = near.newest_heartbeat = 110.0
    router.check()
    assert router.run("page", lambda c: c.server.name, "0-1-5") in {"r1", "r2"}
