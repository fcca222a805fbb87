"""The cache protocol on a real six-node Redis Cluster: every function's keys in one slot, the
groups spread over the shards, and each operation of ``ClusterCache`` doing what the flat
layout does, without a CROSSSLOT (or a script touching a key of another slot) ever.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import pytest
import redis

from service.breaker import CircuitBreaker
from service.cache.cluster import ClusterCache, oldest
from service.cache.entries import PageEntry, TotalsEntry
from service.cache.freshness import Freshness
from service.cache.keys import DROP, CacheKeys, Invalidation, SetTotals
from service.cache.near import InvalidationListener, NearCache
from service.cache.store import NOT_FOLLOWING, CacheUnavailable, load_functions
from service.config.urls import redis_url
from service.orders import roles
from tests.support.redis_cluster import ClusterNode, RedisCluster
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow]

T = TypeVar("T")
GROUP_PAGES = 4
KEYS = CacheKeys("clu", 10, GROUP_PAGES)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster.create() as made:
        yield made


@pytest.fixture
def cache(cluster: RedisCluster) -> Iterator[ClusterCache]:
    client = cluster.client()
    load_functions(client)
    made = ClusterCache(
        client, KEYS, CircuitBreaker("redis", failures=100, reset_after=0.1), hard_ttl=60
    )
    try:
        yield made
    finally:
        for node in cluster.primaries():
            with contextlib.closing(node.client()) as direct:
                direct.flushall()
        client.close()


def _group_keys(group: int) -> dict[str, str]:
    """Every key a step, a read or a fill builds for group ``group`` (by kind)."""
    keys = KEYS.group(group)
    page = KEYS.pages_of(group)[1]
    return {
        "page": KEYS.page(page),
        "lease": KEYS.lease(page),
        "index": keys.index,
        "totals": keys.totals,
        "totals_lease": keys.totals_lease,
        "checkpoint": keys.checkpoint,
        "fence": keys.fence,
        "position": keys.binlog_position,
        "gtid": keys.gtid,
        "channel": keys.channel,
    }


@pytest.mark.parametrize(
    "kind",
    [
        "page",
        "lease",
        "index",
        "totals",
        "totals_lease",
        "checkpoint",
        "fence",
        "position",
        "gtid",
        "channel",
    ],
)
def test_each_key_kind_of_a_group_is_in_the_groups_slot(cluster: RedisCluster, kind: str) -> None:
    for group in (0, 1, 9, 250):
        keys = _group_keys(group)
        assert cluster.keyslot(keys[kind]) == cluster.keyslot(keys["index"]), (group, keys[kind])


def test_the_singleton_keys_share_the_control_slot(cluster: RedisCluster) -> None:
    singletons = [
        KEYS.config,
        KEYS.hot,
        KEYS.invalidator_lease,
        KEYS.invalidator_fence,
        KEYS.inspector_found,
        KEYS.groups,
    ]
    assert len({cluster.keyslot(key) for key in singletons}) == 1


def test_the_flat_layout_keeps_todays_names() -> None:
    flat = CacheKeys("clu", 10)
    assert (flat.page(3), flat.totals, flat.checkpoint, flat.invalidator_fence) == (
        "clu:s10:page:3",
        "clu:s10:totals",
        "clu:s10:checkpoint",
        "clu:s10:invalidator:fence",
    )


def test_groups_spread_over_every_shard(cluster: RedisCluster) -> None:
    owners = {cluster.slot_owner(cluster.keyslot(KEYS.group(g).index)).port for g in range(60)}
    assert len(owners) == len(cluster.primaries())


def _fill(cache: ClusterCache, page: int, text: str) -> None:
    lease = cache.lease_page(page)
    assert lease is not None
    entry = PageEntry.build(f'[{{"x":"{text}"}}]'.encode(), 2**62, lease.at_ms)
    assert cache.fill_page(page, lease.token, entry)
    totals = cache.lease_totals(page)
    if totals is not None:
        assert cache.fill_totals(totals.token, TotalsEntry(2**62, 1000, totals.at_ms), page)


def test_reads_fills_and_steps_stay_in_their_groups(cache: ClusterCache) -> None:
    """Every function runs on the real cluster (a key outside its slot would be an error)."""
    pages = [1, 2, 5, 9, 40, 41]
    for page in pages:
        _fill(cache, page, f"p{page}")
    assert cache.registered_groups() == sorted({KEYS.group_of(p) for p in pages})
    assert all(cache.read(page).page is not None for page in pages)

    # A page step reaches only its group; a shift every group from its page on.
    assert cache.invalidate(Invalidation(pages=frozenset({5})))
    assert cache.read(5).page is None
    assert cache.read(1).page is not None
    assert cache.invalidate(Invalidation(from_page=9))
    assert [cache.read(p).page is not None for p in pages] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]

    # A totals change (every insert or delete) reaches every group's copy.
    entry = TotalsEntry(2**62, 7, 1)
    assert cache.invalidate(Invalidation(totals=SetTotals(entry)))
    assert {cache.read(p).totals for p in pages} == {entry}
    assert cache.invalidate(Invalidation(totals=DROP))
    assert {cache.read(p).totals for p in pages} == {None}


def test_the_oldest_group_position_is_where_to_resume(cache: ClusterCache) -> None:
    for page in (1, 9, 40):
        _fill(cache, page, "x")
    assert cache.stored_position() is None  # registered groups without a position: start fresh
    assert cache.invalidate(Invalidation(position="bin.000002:500|server=s|gtid="))
    assert cache.stored_position() == "bin.000002:500|server=s|gtid="
    # A step that reaches one group only (its page) leaves the others' positions as they were.
    declared, args, _ = cache._group_call(2, Invalidation(position="bin.000002:900|server=s|gtid="))
    cache.run_function("invalidate_group", declared, args)
    assert cache.stored_position() == "bin.000002:500|server=s|gtid="


def test_oldest_refuses_mixed_streams_and_gaps() -> None:
    assert oldest(["a.000001:9|server=s|gtid=", "a.000001:4|server=s|gtid="]) == (
        "a.000001:4|server=s|gtid="
    )
    assert oldest(["a.000001:9|server=s|gtid=", None]) is None
    assert oldest(["a.000001:9|server=s|gtid=", "a.000001:4|server=t|gtid="]) is None


def test_a_deposed_leaders_step_is_refused_in_every_group(cache: ClusterCache) -> None:
    for page in (1, 9, 40):
        _fill(cache, page, "x")
    assert cache.invalidate(Invalidation(pages=frozenset({1}), fence=1))
    assert cache.claim_fence(2)
    assert not cache.invalidate(Invalidation(totals=DROP, fence=1))
    assert {cache.read(p).totals is not None for p in (9, 40)} == {True}
    assert cache.invalidate(Invalidation(totals=DROP, fence=2))
    # A group registered after the new leader took over starts with its fence.
    cache.client.set(KEYS.invalidator_fence, 2)
    _fill(cache, 200, "y")
    assert int(cache.client.get(KEYS.group(KEYS.group_of(200)).fence) or 0) == 2
    assert not cache.invalidate(Invalidation(pages=frozenset({200}), fence=1))
    assert cache.read(200).page is not None


def test_a_step_a_failover_lost_is_caught_and_replayed_from_the_group() -> None:
    """The replica is cut off while a step lands on its primary, which is then killed: the
    promoted replica never had the step. The next step there is refused (NOT_FOLLOWING), and the
    resume position is that group's older one, so the replay covers the lost step."""
    with RedisCluster.create() as own:
        client = own.client()
        load_functions(client)
        cache = ClusterCache(
            client, KEYS, CircuitBreaker("redis", failures=100, reset_after=0.1), hard_ttl=60
        )
        for page in (1, 9, 40, 200):
            _fill(cache, page, "x")
        first = "bin.000001:100|server=s|gtid="
        assert cache.invalidate(Invalidation(position=first))
        group = KEYS.group_of(200)
        primary = own.slot_owner(own.keyslot(KEYS.group(group).index))
        (replica,) = own.replicas_of(primary)
        wait_for(lambda: _replicated(primary, replica), 10, "the replica caught up")
        replica.pause()
        # The link is cut while the replica is stopped: what the primary acknowledges from now
        # on is in no replica's socket buffer either.
        primary.client().client_kill_filter(_type="replica")
        try:
            assert cache.invalidate(
                Invalidation(pages=frozenset({200}), position="bin.000001:200|server=s|gtid=")
            )
            primary.kill()
        finally:
            replica.resume()
        wait_for(lambda: replica.role() == "master" and own.ok(), 60, "the replica promoted")
        lost = Invalidation(position="bin.000001:300|server=s|gtid=")
        assert _retry(lambda: cache.apply_step(lost)) == NOT_FOLLOWING
        assert cache.stored_position() == first
        assert cache.read(200).page is not None  # the lost step's page is back: replay drops it
        assert _retry(lambda: cache.invalidate(Invalidation(pages=frozenset({200}))))
        assert cache.read(200).page is None
        client.close()


def _replicated(primary: ClusterNode, replica: ClusterNode) -> bool:
    offset = primary.client().info("replication")["master_repl_offset"]
    return int(replica.client().info("replication")["slave_repl_offset"]) >= int(offset)


def _retry(call: Callable[[], T]) -> T:
    """Calls during a failover fail until the client's slot map follows it."""
    for _ in range(100):
        try:
            return call()
        except CacheUnavailable:
            time.sleep(0.1)
    return call()


def test_each_roles_acl_user_can_do_its_part_on_a_cluster(cluster: RedisCluster) -> None:
    """`orders-service grants --redis-prefix P --redis-cluster` on every node: the API's user
    reads, registers, leases and fills; the invalidator's leads and applies steps; neither may
    write what the other owns."""
    for role in ("api", "invalidator"):
        rules = roles.redis_acl(role, f"clu_{role}", "clu", cluster=True)
        for node in cluster.primaries() + [
            r for p in cluster.primaries() for r in cluster.replicas_of(p)
        ]:
            with contextlib.closing(node.client()) as direct:
                direct.execute_command("ACL", "SETUSER", f"clu_{role}", *rules, ">pw")
    admin = cluster.client()
    load_functions(admin)
    breaker = CircuitBreaker("redis", failures=100, reset_after=0.1)
    api = ClusterCache(
        cluster.client(username="clu_api", password="pw"), KEYS, breaker, hard_ttl=60
    )
    invalidator = ClusterCache(
        cluster.client(username="clu_invalidator", password="pw"), KEYS, breaker, hard_ttl=60
    )
    try:
        admin.set(KEYS.invalidator_fence, 3)
        _fill(api, 9, "x")
        assert api.read(9).page is not None
        feed = cast(Any, api.client).pubsub()  # the near cache's: the group's shard channel
        feed.ssubscribe(KEYS.group(KEYS.group_of(9)).channel)
        assert invalidator.claim_fence(3)
        assert invalidator.primary_identity() == api.primary_identity()
        assert invalidator.invalidate(
            Invalidation(
                pages=frozenset({9}), totals=DROP, position="b.1:1|server=s|gtid=", fence=3
            )
        )
        assert api.read(9).page is None
        assert _sharded_message(feed).startswith(b"p9")
        feed.close()
        assert invalidator.stored_position() == "b.1:1|server=s|gtid="
        with pytest.raises(redis.exceptions.NoPermissionError):
            api.client.set(KEYS.group(KEYS.group_of(9)).checkpoint, 1)
        with pytest.raises(redis.exceptions.NoPermissionError):
            invalidator.client.set(KEYS.config, 1)
    finally:
        for node in cluster.primaries():
            with contextlib.closing(node.client()) as direct:
                direct.flushall()
        api.client.close()
        invalidator.client.close()
        admin.close()


def test_what_the_inspector_reads_and_repairs_stays_in_one_slot(cache: ClusterCache) -> None:
    for page in (1, 2, 3, 9):
        _fill(cache, page, f"p{page}")
    lookups, now_ms = cache.read_block_at(1, 10)  # cut at the group's end (4 pages a group)
    assert [lookup.page is not None for lookup in lookups] == [True, True, True, False]
    assert now_ms > 0
    assert set(cache.sample_pages(10)) == {1, 2, 3, 9}
    assert cache.invalidate(Invalidation(checkpoint_ms=now_ms - 1))
    assert cache.checkpoint() == now_ms - 1
    cache.drop(9)
    assert cache.read(9).page is None
    cache.drop(None)
    assert {cache.read(p).totals for p in (1, 9)} == {None}
    cache.note_inconsistency(now_ms)
    assert cache.last_inconsistency() == now_ms
    assert cache.hot_pages(5) == []


def test_near_caches_hear_each_groups_shard_channel(
    cluster: RedisCluster, cache: ClusterCache
) -> None:
    """The listener SSUBSCRIBEs every registered group's channel; a step on a group reaches
    the near cache and its channel checkpoint; a page of a group not heard is not kept."""
    for page in (3, 20):
        _fill(cache, page, "x")
    near = NearCache(100)
    freshness = Freshness(2.0)
    listener = InvalidationListener(redis_url(cluster.url), near, KEYS, freshness, {})
    listener.start()
    try:
        heard = {KEYS.group_of(3), KEYS.group_of(20)}
        wait_for(
            lambda: near.live() and (near.groups or set()) >= heard,
            20,
            f"{heard} heard {near.groups}",
        )
        entry = PageEntry.build(b"[]", 2**62, 1)
        near.store(3, entry, None, near.version)
        near.store(99, entry, None, near.version)  # group 24: nobody registered it
        assert near.get(3)[0] == entry
        now_ms = int(cache.time()[0]) * 1000
        assert cache.invalidate(Invalidation(pages=frozenset({3}), checkpoint_ms=now_ms))
        wait_for(lambda: near.get(3)[0] is None, 10, "page 3 dropped from the near cache")
        wait_for(
            lambda: freshness.group_channel_ms.get(KEYS.group_of(20)) == now_ms,
            10,
            "the checkpoint heard on group 20's channel",
        )
    finally:
        listener.stop()


def _sharded_message(feed: Any, seconds: float = 15) -> bytes:
    """The first message (not a subscription's confirmation) on a sharded subscription."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = feed.get_sharded_message(timeout=0.5)
        if message is not None and message["type"] in (b"smessage", "smessage"):
            return cast(bytes, message["data"])
    raise AssertionError("no message on the group's shard channel")


def test_a_replay_never_moves_a_group_that_is_ahead_back_to_an_older_gtid_state(
    cache: ClusterCache,
) -> None:
    """A new term replays from the oldest group position; a group already past a replayed step
    keeps the newer GTID state it holds (its checkpoint never moves back either), so a replica
    fill there still waits for every write whose drop the group applied."""
    for page in (1, 9):
        _fill(cache, page, "x")
    behind, ahead = KEYS.group_of(1), KEYS.group_of(9)
    old = "bin.000002:500|server=s|gtid=0-1-5"
    assert cache.invalidate(Invalidation(position=old, gtid="0-1-5"))
    declared, args, _ = cache._group_call(
        ahead, Invalidation(position="bin.000002:900|server=s|gtid=0-1-9", gtid="0-1-9")
    )
    cache.run_function("invalidate_group", declared, args)
    assert cache.stored_chain() == old  # a new term starts from the group that is behind
    replayed = Invalidation(pages=frozenset({9}), position=old, gtid="0-1-7")
    assert cache.invalidate(replayed)
    state = cache.client.get(KEYS.group(ahead).gtid) or b""
    assert state.split(b"|")[0] == b"0-1-9"
    assert (cache.client.get(KEYS.group(behind).gtid) or b"").split(b"|")[0] == b"0-1-7"
