"""The MySQL primary fails over under the running service (issue 20): real processes
(`orders-service serve` and `invalidate`) against a MariaDB primary with two GTID replicas
(semi-synchronous, AFTER_SYNC) behind one address that moves to the promoted replica. Each
scenario ends with the checker: every page and the totals the API serves equal what the (new)
primary holds, in one snapshot.

- a replica promoted under writes, the old primary killed: the invalidator follows the new
  primary by GTID, with no fresh start (no cache clear) and no missed write;
- the invalidator down during the promotion and restarted on the promoted server: it resumes
  from its stored GTID state and applies what it missed;
- the address moved to a server with another history: refused (a fresh start, as before).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest
import requests

from tests.faults.conftest import Stack, run_cli, wait_until
from tests.faults.traffic import INSERT_SQL, assert_consistent, sample, scrape
from tests.support.mysql_replication import ReplicationSet
from tests.support.servers import MariaDBServer

pytestmark = [pytest.mark.faults, pytest.mark.slow]

PAGES = range(1, 61)
FAILOVER_WAIT = 60  # seconds for every page to agree after a promotion


@pytest.fixture
def rs() -> Iterator[ReplicationSet]:
    with ReplicationSet.create(replicas=2, semisync=True) as made:
        made.primary.create_database("orders_faults")
        made.wait_all_caught_up()
        yield made


def gtid_stack(stack_factory: Callable[..., Stack], rs: ReplicationSet) -> Stack:
    return stack_factory(orders=600, database=rs.endpoint.database("orders_faults"))


def metric(stack: Stack, name: str, labels: str = "") -> float:
    return sample(scrape(stack.invalidator_port), name, labels) or 0.0


def fresh_starts(stack: Stack) -> float:
    return metric(stack, "orders_invalidator_events_total", '{kind="fresh_start"}')


def primary_changes(stack: Stack) -> float:
    return metric(stack, "orders_invalidator_primary_changes_total")


class Traffic:
    """A writer through the primary's address (reconnecting across the failover; only
    acknowledged commits count) and two readers re-caching pages."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.acknowledged = 0
        self.failed = 0
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def _write_one(self, cur: Any, rng: random.Random, n: int) -> None:
        if n % 10 == 0:
            cur.execute(INSERT_SQL.format(name=f"w{n}"))
        elif n % 17 == 0:
            cur.execute("DELETE FROM orders WHERE id = %s", (rng.randint(1, 600),))
        else:
            cur.execute(
                "UPDATE orders SET customer_name = %s WHERE id = %s", (f"w{n}", rng.randint(1, 600))
            )

    def write(self) -> None:
        rng = random.Random(21)
        n = 0
        while not self.stop.is_set():
            try:
                with (
                    contextlib.closing(self.stack.db.connect(read_timeout=10)) as conn,
                    conn.cursor() as cur,
                ):
                    while not self.stop.is_set():
                        n += 1
                        self._write_one(cur, rng, n)
                        self.acknowledged += 1
                        time.sleep(0.01)
            except pymysql.MySQLError:
                self.failed += 1  # the primary died under it: reconnect to the address
                self.stop.wait(0.1)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                self.errors.append(exc)
                return

    def read(self) -> None:
        rng = random.Random(22)
        while not self.stop.is_set():
            with contextlib.suppress(requests.RequestException):
                self.stack.get(rng.choice(PAGES))

    @contextlib.contextmanager
    def running(self) -> Iterator[Traffic]:
        threads = [threading.Thread(target=self.write)]
        threads += [threading.Thread(target=self.read) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert not self.errors, self.errors


def test_a_replica_promoted_under_writes_is_followed_without_a_fresh_start(
    stack_factory: Callable[..., Stack],
    rs: ReplicationSet,
    report: Callable[[str, dict[str, Any]], None],
) -> None:
    stack = gtid_stack(stack_factory, rs)
    cleared = fresh_starts(stack)  # the first start, with no stored position
    with Traffic(stack).running() as traffic:
        wait_until(lambda: traffic.acknowledged > 100, 60, "writes before the failover")
        rs.kill_primary()
        killed_at = time.monotonic()
        rs.promote(rs.most_advanced())
        promoted_after = time.monotonic() - killed_at
        at_promotion = traffic.acknowledged
        wait_until(lambda: traffic.acknowledged > at_promotion + 100, 60, "writes afterwards")
    took = assert_consistent(stack, within=FAILOVER_WAIT)
    assert primary_changes(stack) == 1
    assert fresh_starts(stack) == cleared
    report(
        "mysql_promotion_under_writes",
        {
            "writes": traffic.acknowledged,
            "writes_failed_in_failover": traffic.failed,
            "promotion_s": round(promoted_after, 2),
            "consistent_after_s": round(took, 2),
        },
    )


def test_an_invalidator_restarted_on_the_promoted_server_resumes_by_gtid(
    stack_factory: Callable[..., Stack], rs: ReplicationSet
) -> None:
    stack = gtid_stack(stack_factory, rs)
    assert stack.invalidator is not None
    for page in PAGES:
        stack.get(page)
    assert stack.redis.exists(stack.key("page:2"), stack.key("page:3")) == 2
    stack.invalidator.kill()
    # Missed by the invalidator: committed on the old primary, and on the promoted one after.
    stack.sql("UPDATE orders SET customer_name = 'before failover' WHERE id = 15")
    rs.wait_all_caught_up()
    rs.kill_primary()
    rs.promote(rs.most_advanced())
    stack.sql("UPDATE orders SET customer_name = 'after failover' WHERE id = 25")
    stack.sql(INSERT_SQL.format(name="inserted after failover"))
    stack.start_invalidator()
    # Counted once the stored position was found on the new server (before following it).
    wait_until(lambda: primary_changes(stack) == 1, 60, f"the resume\n{stack.invalidator.tail()}")
    # Nobody read in between: only the invalidator can have dropped the pages it missed.
    wait_until(
        lambda: not stack.redis.exists(stack.key("page:2"), stack.key("page:3")),
        60,
        "the writes missed while down to be invalidated",
    )
    assert_consistent(stack, within=FAILOVER_WAIT)
    assert fresh_starts(stack) == 0


def test_an_address_moved_to_another_history_is_refused_and_the_cache_cleared(
    stack_factory: Callable[..., Stack], rs: ReplicationSet, throwaway: Any
) -> None:
    stack = gtid_stack(stack_factory, rs)
    stranger: MariaDBServer = throwaway.mariadb(
        extra_args=("--server-id=9", "--gtid-strict-mode=ON")
    )
    other = stranger.create_database("orders_faults")
    env = {**stack.env, "ORDERS_DATABASE_URL": other.url}
    run_cli(env, "migrate")
    run_cli(env, "seed", "--orders", "700")  # another history, further on than ours
    for page in PAGES:
        stack.get(page)
    cleared = fresh_starts(stack)
    rs.endpoint.forwarder.retarget(stranger.port)
    wait_until(lambda: fresh_starts(stack) > cleared, 60, "the invalidator to refuse it")
    assert_consistent(stack, within=FAILOVER_WAIT)
    assert primary_changes(stack) == 0


@pytest.fixture
def async_rs() -> Iterator[ReplicationSet]:
    """Asynchronous replication: a promoted replica can lack the old primary's last commits."""
    with ReplicationSet.create(replicas=1) as made:
        made.primary.create_database("orders_faults")
        made.wait_all_caught_up()
        yield made


def test_a_page_cached_from_commits_the_promoted_replica_never_received_is_dropped(
    stack_factory: Callable[..., Stack], async_rs: ReplicationSet
) -> None:
    """With asynchronous replication MySQL itself loses a promoted-over primary's last commits.
    A page filled from one of them, which the invalidator had not read yet, would otherwise be
    served from the cache until its TTL as a HIT of a row MySQL no longer has: once followed,
    the promotion drops every page filled since the last checkpoint (less a lease's length, the
    longest a fill can take)."""
    stack = stack_factory(orders=600, database=async_rs.endpoint.database("orders_faults"))
    assert stack.invalidator is not None
    for page in PAGES:
        stack.get(page)
    stack.invalidator.kill()
    (replica,) = async_rs.replicas
    replica.cli("STOP SLAVE IO_THREAD;")  # what the old primary commits now never reaches it
    stack.sql("UPDATE orders SET customer_name = 'lost in the failover' WHERE id = 15")
    stack.redis.delete(stack.key("page:2"))
    assert "lost in the failover" in stack.get(2).text  # filled from the old primary
    async_rs.kill_primary()
    async_rs.promote(replica)
    stack.start_invalidator()
    wait_until(lambda: primary_changes(stack) == 1, 60, f"the resume\n{stack.invalidator.tail()}")
    assert_consistent(stack, within=FAILOVER_WAIT)
    assert fresh_starts(stack) == 0
