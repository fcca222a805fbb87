"""The whole service on a six-node Redis Cluster: `orders-service serve` and `invalidate` with
``ORDERS_REDIS_URL=redis+cluster://...``, readers and writers running while slots migrate
(`redis-cli --cluster reshard`), a primary is killed, and a replica is promoted by
``CLUSTER FAILOVER``. After each, every page agrees with one MySQL snapshot well within
``ORDERS_CACHE_MAX_LAG`` (set long here, so agreement comes from invalidation, not from entries
ageing out) once the invalidator has worked off its backlog, no request failed, and no node
ever answered CROSSSLOT.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from service.cache.keys import CacheKeys
from service.invalidation.changes import BinlogPosition
from tests.faults.conftest import PAGE_SIZE, ServiceProcess, Stack
from tests.faults.traffic import INSERT_SQL, Load, failures
from tests.support.consistency import assert_consistent, http_fetch
from tests.support.redis_cluster import RedisCluster
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ORDERS = 1500  # 150 pages of 10: 19 groups of 8 over three shards
MAX_LAG = 60.0
SETTLE = 3.0  # far below MAX_LAG: the pages agree because they were invalidated
KEYS = CacheKeys("faults", PAGE_SIZE, 8)


@pytest.fixture
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster.create() as made:
        yield made


@pytest.fixture
def cluster_stack(
    stack_factory: Callable[..., Stack], cluster: RedisCluster, tmp_path: Path
) -> Stack:
    stack = stack_factory(
        orders=ORDERS,
        invalidator=False,
        ORDERS_REDIS_URL=cluster.url,
        ORDERS_REDIS_CLUSTER_GROUP_PAGES="8",
        ORDERS_CACHE_MAX_LAG=str(MAX_LAG),
    )
    stack.invalidator = ServiceProcess("invalidate-cluster", ["invalidate"], stack.env, tmp_path)
    stack.invalidator.start()
    wait_for(
        lambda: stack.invalidator is not None and stack.invalidator.running and _healthy(stack),
        60,
        "the invalidator on the cluster",
    )
    for page in range(1, ORDERS // PAGE_SIZE + 1):  # every group registered and cached
        assert stack.get(page).status_code == 200
    wait_for(lambda: _positions(cluster) >= 19, 30, "every group holding a binlog position")
    return stack


def _healthy(stack: Stack) -> bool:
    import requests

    return requests.get(f"http://127.0.0.1:{stack.invalidator_port}/healthz", timeout=1).ok


def _positions(cluster: RedisCluster) -> int:
    found = 0
    for node in cluster.primaries():
        with contextlib.closing(node.client()) as direct:
            found += sum(1 for _ in direct.scan_iter(match="{faults:s10:g*}:binlog"))
    return found


def _crossslot_errors(cluster: RedisCluster) -> dict[int, object]:
    seen: dict[int, object] = {}
    for node in cluster.live():
        with contextlib.closing(node.client(decode_responses=True)) as direct:
            stats = direct.info("errorstats")
        for name, value in stats.items():
            if "CROSSSLOT" in name.upper():
                seen[node.port] = value
    return seen


class Writer(threading.Thread):
    """Updates, inserts and deletes, one commit every few ms, until stopped."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.stop = threading.Event()
        self.commits = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(11)
        try:
            with contextlib.closing(self.stack.db.connect()) as conn, conn.cursor() as cur:
                while not self.stop.is_set():
                    kind = rng.randrange(3)
                    if kind == 0:
                        cur.execute(INSERT_SQL.format(name=f"c{self.commits}"))
                    elif kind == 1:
                        cur.execute(
                            "UPDATE orders SET customer_name = %s ORDER BY RAND() LIMIT 1",
                            (f"u{self.commits}",),
                        )
                    else:
                        cur.execute("DELETE FROM orders ORDER BY RAND() LIMIT 1")
                    conn.commit()
                    self.commits += 1
                    self.stop.wait(0.005)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _under_traffic(stack: Stack, operation: Callable[[], None]) -> tuple[Load, int]:
    """``operation`` while three readers and a writer run; then the writer stops."""
    writer = Writer(stack)
    with Load(stack, lambda rng: rng.randint(1, ORDERS // PAGE_SIZE), threads=3) as load:
        writer.start()
        operation()
        time.sleep(0.5)  # traffic after the operation too (not a wait for a condition)
        writer.stop.set()
        writer.join(30)
    assert writer.error is None, writer.error
    return load, writer.commits


def _caught_up(stack: Stack, cluster: RedisCluster) -> float:
    """Waits until every group's stored position is past where the binlog ended once the
    writer stopped (the invalidator worked off its backlog, however slow this machine is)."""
    (file, offset, *_), *_ = stack.sql("SHOW MASTER STATUS")
    end = BinlogPosition(str(file), int(offset))
    client = cluster.client()

    def past() -> bool:
        groups = client.zrange(KEYS.groups, 0, -1)
        stored = [client.get(KEYS.group(int(g)).binlog_position) for g in groups]
        return bool(stored) and all(
            s is not None and BinlogPosition.parse(s.decode()) >= end for s in stored
        )

    try:
        return wait_for(past, 120, "every group's position past the end of the writes")
    finally:
        client.close()


def _consistent(stack: Stack, cluster: RedisCluster) -> float:
    _caught_up(stack, cluster)
    try:
        return assert_consistent(
            http_fetch(stack.base_url), stack.db.connect, PAGE_SIZE, repeats=2, settle=SETTLE
        )
    except AssertionError:
        print(_diagnosis(stack, cluster))
        raise


def _diagnosis(stack: Stack, cluster: RedisCluster) -> str:
    """The first groups' keys on every primary and the invalidator's log, for a failure."""
    lines = []
    for node in cluster.primaries():
        with contextlib.closing(node.client(decode_responses=True)) as direct:
            for key in sorted(direct.scan_iter(match="{faults:s10:g[01]}*")):
                kind = direct.type(key)
                value = direct.get(key) if kind == "string" else direct.zrange(key, 0, -1)
                lines.append(f":{node.port} {key} {str(value)[:90]}")
    for page in range(1, 9):
        response = stack.get(page)
        first = response.json()["orders"][0]["id"] if response.status_code == 200 else None
        lines.append(f"page {page}: {response.headers.get('X-Cache')} first id {first}")
    assert stack.invalidator is not None
    return "\n".join([*lines, stack.invalidator.tail(), stack.web.tail()])


def test_slot_migration_under_readers_and_writers(
    cluster_stack: Stack, cluster: RedisCluster
) -> None:
    source, target = cluster.primaries()[:2]

    def migrate() -> None:
        cluster.reshard(source, target, 2000)

    load, commits = _under_traffic(cluster_stack, migrate)
    cluster.wait_ok()
    assert commits > 20
    assert not failures(load.samples), failures(load.samples)[:5]
    _consistent(cluster_stack, cluster)
    assert not _crossslot_errors(cluster)


def test_a_primary_killed(cluster_stack: Stack, cluster: RedisCluster) -> None:
    primary = cluster.primaries()[0]
    load, commits = _under_traffic(cluster_stack, lambda: cluster.kill_primary(primary))
    assert commits > 20
    _consistent(cluster_stack, cluster)
    assert not _crossslot_errors(cluster)
    assert load.samples


def test_cluster_failover_of_a_replica(cluster_stack: Stack, cluster: RedisCluster) -> None:
    replica = cluster.replicas_of(cluster.primaries()[1])[0]
    load, commits = _under_traffic(cluster_stack, lambda: cluster.failover(replica))
    assert commits > 20
    assert not failures(load.samples), failures(load.samples)[:5]
    _consistent(cluster_stack, cluster)
    assert not _crossslot_errors(cluster)
