"""Misses read from MariaDB replicas, and never cache an old row (issue 20).

Real processes: a GTID primary with two replicas (tests/support/mysql_replication.py), a
throwaway Redis, `orders-service serve` reading misses from the replicas and `orders-service
invalidate` following the primary. Lag is deterministic (`STOP SLAVE SQL_THREAD`). Every scenario
ends with the checker: every page and the totals served, against one snapshot of the primary.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.faults.conftest import (
    CACHE_PREFIX,
    PAGE_SIZE,
    ServiceProcess,
    Stack,
    order_key,
    run_cli,
)
from tests.support.consistency import assert_consistent, http_fetch
from tests.support.fixtures import ThrowawayServers
from tests.support.mysql_replication import ReplicationSet
from tests.support.processes import clean_env
from tests.support.servers import MariaDBServer, free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]
SCHEMA = "orders_faults"
ORDERS = 300
SETTLE = 15.0  # the bound (ORDERS_CACHE_MAX_LAG, 2 s) plus a refill, on a loaded machine


class ReplicaStack:
    """A Stack whose misses may read the replicas of ``rs``."""

    def __init__(self, stack: Stack, rs: ReplicationSet) -> None:
        self.stack = stack
        self.rs = rs

    def replica_rows(self, replica: MariaDBServer, page: int) -> list[tuple[int, str, str, str]]:
        with contextlib.closing(replica.connect(SCHEMA)) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT id, customer_name, status, amount FROM orders ORDER BY id "
                "LIMIT %s OFFSET %s",
                (PAGE_SIZE, (page - 1) * PAGE_SIZE),
            )
            return [(int(i), str(n), str(s), str(a)) for i, n, s, a in cur.fetchall()]

    def metric(self, name: str, **labels: str) -> float:
        """The sum of a metric's samples over the API's workers (prometheus text format)."""
        text = requests.get(f"{self.stack.base_url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def check(self) -> float:
        return assert_consistent(
            http_fetch(self.stack.base_url),
            self.stack.db.connect,
            PAGE_SIZE,
            repeats=2,
            settle=SETTLE,
        )


@pytest.fixture
def replica_stack(
    throwaway: ThrowawayServers, tmp_path: Path
) -> Iterator[Callable[..., ReplicaStack]]:
    made: list[tuple[Stack, ReplicationSet]] = []

    def make(**extra: str) -> ReplicaStack:
        rs = ReplicationSet.create(replicas=2)
        database = rs.primary.create_database(SCHEMA)
        redis_server = throwaway.redis()
        http_port, invalidator_port = free_port(), free_port()
        metrics_dir = tmp_path / f"metrics-{http_port}"
        metrics_dir.mkdir()
        env = {
            **clean_env(),
            "ORDERS_DATABASE_URL": database.url,
            "ORDERS_DATABASE_REPLICA_URLS": ",".join(r.database_url(SCHEMA) for r in rs.replicas),
            "ORDERS_REDIS_URL": redis_server.url,
            "ORDERS_CACHE_PREFIX": CACHE_PREFIX,
            "ORDERS_PAGE_SIZE": str(PAGE_SIZE),
            "ORDERS_HOST": "127.0.0.1",
            "ORDERS_PORT": str(http_port),
            "ORDERS_WORKERS": "2",
            "ORDERS_THREADS": "4",
            "ORDERS_SHUTDOWN_DELAY": "0",
            "ORDERS_METRICS_DIR": str(metrics_dir),
            "ORDERS_INVALIDATOR_METRICS_PORT": str(invalidator_port),
            "ORDERS_LOG_FORMAT": "json",
            "ORDERS_LOG_LEVEL": "warning",
            "ORDERS_NEAR_CACHE": "false",
            **extra,
        }
        run_cli(env, "migrate")
        run_cli(env, "seed", "--orders", str(ORDERS))
        rs.wait_all_caught_up()
        stack = Stack(
            db=database,
            redis_server=redis_server,
            env=env,
            web=ServiceProcess(f"serve-{http_port}", ["serve"], env, tmp_path),
            invalidator=ServiceProcess(f"invalidate-{http_port}", ["invalidate"], env, tmp_path),
            http_port=http_port,
            invalidator_port=invalidator_port,
        )
        made.append((stack, rs))
        stack.start_invalidator()
        stack.start_web()
        return ReplicaStack(stack, rs)

    try:
        yield make
    finally:
        for stack, rs in made:
            stack.close()
            rs.close()


def _rename(stack: Stack, page: int, name: str) -> int:
    """Rename the first order of ``page`` on the primary; its id."""
    (first_id,) = stack.sql(
        "SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET %s", ((page - 1) * PAGE_SIZE,)
    )[0]
    stack.sql("UPDATE orders SET customer_name = %s WHERE id = %s", (name, first_id))
    return int(first_id)


def _dropped_with(stack: Stack, state: str) -> Callable[[], bool]:
    """True once the invalidator's last drop recorded a GTID state at least ``state``."""
    want = int(state.rsplit("-", 1)[1])

    def dropped() -> bool:
        raw = stack.redis.get(stack.key("gtid"))
        found = re.fullmatch(rb"0-\d+-(\d+)\|\d*", raw or b"")  # state|checkpoint
        return found is not None and int(found.group(1)) >= want

    return dropped


def test_a_lagging_replica_never_fills_a_page_with_the_row_it_has_not_applied(
    replica_stack: Callable[..., ReplicaStack],
) -> None:
    """The interleaving the gate exists for: write, invalidate, then a miss while every replica
    still holds the old row. The fill waits for the drop's GTID, gives up, reads the primary."""
    rig = replica_stack()
    stack, rs = rig.stack, rig.rs
    page = 3
    assert stack.get(page).status_code == 200  # cached (from a replica: they are caught up)
    assert rig.metric("orders_cache_fills_total", source="replica") >= 1
    for replica in rs.replicas:
        rs.stop_applying(replica)
    try:
        order_id = _rename(stack, page, "Written After The Lag")
        state = rs.gtid_binlog_pos()
        wait_for(_dropped_with(stack, state), 30, "the invalidator to drop the page")
        stale = rig.replica_rows(rs.replicas[0], page)
        assert all(row[1] != "Written After The Lag" for row in stale)  # the replicas are behind
        primary_before = rig.metric("orders_cache_fills_total", source="primary")
        served = [order_key(o) for o in stack.get(page).json()["orders"]]
        assert (order_id, "Written After The Lag") in [(r[0], r[1]) for r in served]
        # and what it stores is the new row too (the recheck may drop the first fill: wait for
        # a hit, each refill again behind the lagging replicas)
        hits: list[list[tuple[int, str, str, str]]] = []

        def a_hit() -> bool:
            again = stack.get(page)
            if again.headers["X-Cache"] == "HIT":
                hits.append([order_key(o) for o in again.json()["orders"]])
            return bool(hits)

        wait_for(a_hit, 30, "the page to be cached again")
        assert hits[0] == served
        # read by the primary: after a GTID wait that timed out, or at once once the lag
        # probe measured the replicas too far behind to wait for
        assert rig.metric("orders_cache_fills_total", source="primary") > primary_before
    finally:
        for replica in rs.replicas:
            rs.start_applying(replica)
    rs.wait_all_caught_up()
    rig.check()


def test_a_replica_lagging_by_seconds_while_its_pages_are_invalidated_and_refilled(
    replica_stack: Callable[..., ReplicaStack],
) -> None:
    """One replica stops applying for seconds while pages are written, invalidated and read
    again and again; the other keeps up. No answer may keep an old row past the bound."""
    rig = replica_stack()
    stack, rs = rig.stack, rig.rs
    lagging = rs.replicas[0]
    with rs.lagging(lagging):
        for round_ in range(6):
            for page in (1, 2, 5, 9):
                _rename(stack, page, f"Round {round_} Page {page}")
                for _ in range(3):
                    assert stack.get(page).status_code == 200
        wait_for(
            _dropped_with(stack, rs.gtid_binlog_pos()), 30, "the invalidator to drop the pages"
        )
        rig.check()  # while the replica still lags
    rs.wait_all_caught_up()
    rig.check()
    assert rig.metric("orders_cache_fills_total", source="replica") >= 1


def test_a_replica_stopped_killed_and_restarted_costs_no_page(
    replica_stack: Callable[..., ReplicaStack],
) -> None:
    rig = replica_stack()
    stack, rs = rig.stack, rig.rs
    victim = rs.replicas[0]
    _execute(victim, "STOP SLAVE")
    _rename(stack, 4, "While Stopped")
    rig.check()
    victim.kill()
    _rename(stack, 4, "While Killed")
    rig.check()
    victim.restart()
    rs.attach(victim)
    rs.wait_caught_up(victim)
    _rename(stack, 4, "After Restart")
    rig.check()


def test_with_every_replica_down_the_primary_serves_and_the_pod_stays_ready(
    replica_stack: Callable[..., ReplicaStack],
) -> None:
    rig = replica_stack()
    stack, rs = rig.stack, rig.rs
    for replica in rs.replicas:
        replica.kill()
    _rename(stack, 2, "No Replica Left")
    rig.check()
    ready = requests.get(f"{stack.base_url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert rig.metric("orders_cache_fills_total", source="primary") >= 1
    seen: list[dict[str, Any]] = []

    def said_degraded() -> bool:
        # each worker's replica check opens its breakers within a few rounds (every 2 s)
        answer = requests.get(f"{stack.base_url}/readyz", timeout=5)
        assert answer.status_code == 200, answer.text
        seen.append(answer.json())
        failing = [d for d in seen[-1].get("degraded", []) if "mysql replica" in d]
        return len(failing) == len(rs.replicas)

    wait_for(said_degraded, 60, "/readyz to name both failing replicas")
    assert {r["state"] for r in seen[-1]["replicas"]} == {"open"}
    assert rig.metric("orders_db_replica_up") == 0


def _execute(server: MariaDBServer, statement: str) -> Any:
    with contextlib.closing(server.connect()) as conn, conn.cursor() as cur:
        cur.execute(statement)
