"""The binlog follower across a MySQL primary failover (issue 20): a GTID replica promoted
while the follower reads through the primary's address is followed on, from the last
transaction handed out, with nothing missed; a server with another history is refused.

Real processes: a MariaDB primary and replicas replicating by GTID (tests/support/
mysql_replication.py) behind a forwarder that moves to the promoted replica, as a DNS name or
a managed endpoint does.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import pytest

from service.invalidation.changes import ChangeBatch
from service.invalidation.follower import BinlogFollower
from service.invalidation.mysql_source import PositionUnavailable, current_position
from tests.support.forwarder import Forwarder
from tests.support.mysql_replication import ReplicationSet
from tests.support.servers import MariaDBServer

pytestmark = [pytest.mark.faults, pytest.mark.slow]

DDL = "CREATE TABLE orders (id BIGINT UNSIGNED PRIMARY KEY, note VARCHAR(40) NOT NULL)"


@dataclass(frozen=True)
class Source:
    host: str
    port: int
    user: str
    password: str


@pytest.fixture
def rs() -> Iterator[ReplicationSet]:
    with ReplicationSet.create(replicas=2) as made:
        db = made.primary.create_database("shop")
        db.execute(DDL)
        made.wait_all_caught_up()
        yield made


def follower(port: int) -> BinlogFollower:
    source = Source("127.0.0.1", port, "root", "")
    return BinlogFollower(
        source,
        server_id=random.randint(1000, 2**31 - 1),
        start=current_position(source),
        schemas=["shop"],
        heartbeat_seconds=0.2,
        max_backoff_seconds=0.5,
    )


def insert(server: MariaDBServer, *ids: int) -> None:
    for order_id in ids:
        server.cli(f"INSERT INTO shop.orders VALUES ({order_id}, 'n{order_id}');")


def inserted(batch: ChangeBatch) -> list[int]:
    return [c.after_id for c in batch.changes if c.kind == "insert" and c.after_id is not None]


def test_a_promoted_replica_is_followed_on_from_the_last_transaction_handed_out(
    rs: ReplicationSet,
) -> None:
    endpoint = rs.endpoint
    tail = follower(endpoint.port)
    seen: list[int] = []
    with closing(tail.batches()) as stream:
        insert(endpoint, 1)
        for batch in stream:
            seen.extend(inserted(batch))
            if seen == [1]:
                break
        # Replicated but not yet read by the follower when the primary dies.
        insert(endpoint, 2, 3)
        rs.wait_all_caught_up()
        rs.kill_primary()
        promoted = rs.promote(rs.most_advanced())
        insert(endpoint, 4)
        for batch in stream:
            seen.extend(inserted(batch))
            if len(seen) >= 4:
                break
    assert seen == [1, 2, 3, 4]
    assert tail.watch.primary_changes == 1
    assert tail.position is not None
    assert tail.position.server != "mariadb:1"  # the positions are the promoted server's now
    assert tail.position.gtid == rs.gtid_binlog_pos(promoted)


def test_a_server_with_another_history_is_refused(rs: ReplicationSet) -> None:
    stranger = MariaDBServer.create(
        extra_args=("--server-id=9", "--gtid-strict-mode=ON", "--log-slave-updates=ON")
    )
    with stranger, Forwarder(rs.primary.port) as address:
        stranger.create_database("shop").execute(DDL)
        insert(stranger, *range(100, 110))  # a longer history of its own: higher seq numbers
        tail = follower(address.port)
        with closing(tail.batches()) as stream:
            insert(rs.primary, 1)
            for batch in stream:
                if inserted(batch) == [1]:
                    break
            address.retarget(stranger.port)
            with pytest.raises(PositionUnavailable, match=r"1236|lacks"):
                for _ in stream:
                    pass
    assert tail.watch.primary_changes == 0


def test_without_a_gtid_state_a_new_server_is_another_history(rs: ReplicationSet) -> None:
    """A position without a GTID state (MySQL with gtid_mode OFF, or one stored by an older
    version before the first transaction was read) names a place in one server's binlog only:
    a promotion is refused, as before issue 20."""
    endpoint = rs.endpoint
    source = Source("127.0.0.1", endpoint.port, "root", "")
    here = current_position(source)
    tail = BinlogFollower(
        source,
        server_id=random.randint(1000, 2**31 - 1),
        start=here.with_identity(here.server, ""),
        schemas=["shop"],
        heartbeat_seconds=0.2,
        max_backoff_seconds=0.5,
    )
    with closing(tail.batches()) as stream:
        next(stream)  # connected; no transaction read yet, so no GTID state learnt either
        rs.kill_primary()
        rs.promote(rs.most_advanced())
        with pytest.raises(PositionUnavailable, match="no GTID state"):
            for _ in stream:
                pass
