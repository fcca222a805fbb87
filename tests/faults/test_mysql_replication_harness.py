"""The replication harness itself: GTID replicas catch up, lag on demand, and a promoted
replica carries the old primary's history (so the invalidator can follow it by GTID)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.mysql_replication import ReplicationSet, parse_gtid_list
from tests.support.servers import MariaDBServer
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.fixture
def rs() -> Iterator[ReplicationSet]:
    with ReplicationSet.create(replicas=2) as made:
        yield made


def _count(server: MariaDBServer, database: str) -> int:
    with server.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM t")
        return int(cur.fetchone()[0])


def test_replicas_follow_lag_on_demand_and_survive_a_promotion(rs: ReplicationSet) -> None:
    db = rs.primary.create_database("h")
    db.execute("CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    rs.wait_all_caught_up()
    lagging, other = rs.replicas
    assert _count(lagging, "h") == 1

    with rs.lagging(lagging):
        db.execute("INSERT INTO t VALUES (2)")
        rs.wait_caught_up(other)
        assert _count(other, "h") == 2
        assert _count(lagging, "h") == 1  # received, not applied
    rs.wait_caught_up(lagging)
    assert _count(lagging, "h") == 2

    before = parse_gtid_list(rs.gtid_binlog_pos())
    old = rs.kill_primary()
    assert not old.running
    promoted = rs.promote(other)
    # log_slave_updates: the promoted server's binlog holds the old primary's GTIDs.
    assert parse_gtid_list(rs.gtid_binlog_pos(promoted)) == before
    promoted.cli("INSERT INTO h.t VALUES (3)")
    after = parse_gtid_list(rs.gtid_binlog_pos(promoted))
    assert after[0][0] == 3
    assert after[0][1] == before[0][1] + 1
    wait_for(lambda: _count(lagging, "h") == 3, 30, "the other replica to follow the new primary")
    assert rs.replicas == [lagging]
