"""PageCache's decision tree, branch by branch, against an in-memory store (the unit tier).

The real-server tests (tests/integration, tests/faults) prove the Redis protocol; these prove the
logic above it: every outcome (hit, miss, stale, bypass/error), the lease (ours, someone else's,
a filler that comes through or does not), MySQL failing, Redis down, the near cache live or not,
and the lag bound (``ORDERS_CACHE_MAX_LAG``) with and without a checkpoint. Time is a variable
here: the wall clock, the monotonic clock and Redis' clock are all driven by the test.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from service.cache.aside import PageCache, PageNotFound
from service.cache.entries import PageEntry, TotalsEntry
from service.cache.freshness import Freshness, RedisClock
from service.cache.keys import CacheKeys
from service.cache.near import NearCache
from service.cache.replies import Lease, Lookup
from service.cache.store import CacheUnavailable
from service.cache_outcomes import CacheOutcome
from service.orders.database import DatabaseUnavailable

HIT, MISS, STALE = CacheOutcome.HIT, CacheOutcome.MISS, CacheOutcome.STALE
BYPASS, ERROR = CacheOutcome.BYPASS, CacheOutcome.ERROR
PAGE_SIZE = 10
TTL = 60
MAX_LAG = 2.0
REDIS_OFFSET_MS = 7_000_000.0  # Redis' clock is nowhere near ours: only differences may matter


@dataclass
class Clocks:
    """One test-driven time line, seen through three clocks that disagree by constants."""

    t: float = 1000.0  # seconds

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return self.t + 1_700_000_000.0

    def redis_ms(self) -> int:
        return int(self.t * 1000 + REDIS_OFFSET_MS)


@dataclass
class Breaker:
    state: str = "closed"

    @property
    def is_closed(self) -> bool:
        return self.state == "closed"


@dataclass
class FakeStore:
    """The RedisCache calls PageCache makes, over dicts; a filler can be simulated on reread."""

    clocks: Clocks
    pages: dict[int, PageEntry] = field(default_factory=dict)
    totals: TotalsEntry | None = None
    checkpoint: int | None = None
    leases: dict[str, str] = field(default_factory=dict)
    up: bool = True
    keys: CacheKeys = field(default_factory=lambda: CacheKeys("fake", 10))
    breaker: Breaker = field(default_factory=Breaker)
    reads: int = 0
    on_read: list[object] = field(default_factory=list)  # callables run before each read
    gtid: str = ""  # the invalidator's last recorded GTID state, as LEASE_AT hands it out
    _tokens: itertools.count[int] = field(default_factory=itertools.count)

    def _check(self) -> None:
        if not self.up:
            raise CacheUnavailable("down")

    def read(self, page: int) -> Lookup:
        self._check()
        self.reads += 1
        for hook in list(self.on_read):
            hook()  # type: ignore[operator]
        return Lookup(self.pages.get(page), self.totals, self.checkpoint)

    def _lease(self, key: str) -> Lease | None:
        self._check()
        if key in self.leases:
            return None
        token = f"t{next(self._tokens)}"
        self.leases[key] = token
        return Lease(token, self.clocks.redis_ms(), self.gtid, self.checkpoint)

    def lease_page(self, page: int) -> Lease | None:
        return self._lease(f"page:{page}")

    def lease_totals(self, page: int = 1) -> Lease | None:
        return self._lease("totals")

    def fill_page(self, page: int, token: str, entry: PageEntry) -> bool:
        self._check()
        if self.leases.get(f"page:{page}") != token:
            return False
        del self.leases[f"page:{page}"]
        self.pages[page] = entry
        return True

    def fill_totals(self, token: str, entry: TotalsEntry, page: int = 1) -> bool:
        self._check()
        if self.leases.get("totals") != token:
            return False
        del self.leases["totals"]
        self.totals = entry
        return True

    def invalidate_page(self, page: int) -> None:
        self.pages.pop(page, None)
        self.leases.pop(f"page:{page}", None)


@dataclass
class FakeMySQL:
    orders: int = 95
    version: int = 0
    up: bool = True
    queries: int = 0
    states: list[str] = field(default_factory=list)  # the GTID state each load was given

    def load_page(self, page: int, state: str = "") -> bytes:
        self.states.append(state)
        self._query()
        return b'[{"page":%d,"v":%d}]' % (page, self.version)

    def load_total(self, state: str = "") -> int:
        self.states.append(state)
        self._query()
        return self.orders

    def _query(self) -> None:
        if not self.up:
            raise DatabaseUnavailable("down")
        self.queries += 1


@dataclass
class World:
    clocks: Clocks
    store: FakeStore
    mysql: FakeMySQL
    freshness: Freshness
    near: NearCache | None
    cache: PageCache

    def advance(self, seconds: float) -> None:
        self.clocks.t += seconds

    def heartbeat(self, *, channel: bool = True) -> None:
        """The invalidator's checkpoint advances to Redis' now (and is heard on the channel)."""
        self.store.checkpoint = self.clocks.redis_ms()
        if channel:
            self.freshness.saw_checkpoint(self.store.checkpoint, from_channel=True)
            if self.near is not None:
                self.near.heard_from_redis()


def make_world(
    *, near: bool = False, lock_wait: float = 0.05, replica_budget: float | None = None
) -> World:
    clocks = Clocks()
    clock = RedisClock(monotonic=clocks.monotonic, wall=clocks.wall)
    # One exact TIME sample: the offset is known with no error.
    clock.observe(clocks.redis_ms(), clocks.t, clocks.t)
    freshness = Freshness(MAX_LAG, clock)
    store = FakeStore(clocks)
    mysql = FakeMySQL()
    near_cache = NearCache(100, clock=clocks.monotonic) if near else None
    if near_cache is not None:
        near_cache.heard_from_redis()
    cache = PageCache(
        store,  # type: ignore[arg-type]
        near_cache,
        load_page=mysql.load_page,
        load_total=mysql.load_total,
        page_size=PAGE_SIZE,
        ttl=TTL,
        lock_wait=lock_wait,
        freshness=freshness,
        wall=clocks.wall,
        replica_budget=replica_budget,
    )
    return World(clocks, store, mysql, freshness, near_cache, cache)


@pytest.fixture
def world() -> World:
    return make_world()


# --- the TTL and the lease -------------------------------------------------------------------


def test_each_load_gets_its_lease_gtid_state_and_claims_only_the_checkpoint() -> None:
    """A replica may serve the fill only once it has applied the lease's state; what it reads
    is as new as the lease's checkpoint, so that is the read time the entry claims."""
    world = make_world(replica_budget=1.5)
    world.heartbeat()
    checkpoint = world.store.checkpoint
    world.advance(0.5)
    world.store.gtid = "0-1-42"
    world.cache.get(3)
    assert world.mysql.states == ["0-1-42", "0-1-42"]  # the totals and the page
    assert world.store.pages[3].read_ms == checkpoint


def test_an_old_checkpoint_sends_the_fill_to_the_primary() -> None:
    """The invalidator dead or behind: a replica's data is vouched for by nothing recent, so
    the primary reads (stamped with the lease's clock), and the bound holds for the MISS."""
    world = make_world(replica_budget=1.5)
    world.heartbeat()
    world.advance(1.6)
    world.store.gtid = "0-1-42"
    world.cache.get(3)
    assert world.mysql.states == ["", ""]
    assert world.store.pages[3].read_ms == world.clocks.redis_ms()


@pytest.mark.parametrize("gtid", ["", "0-1-42"])
def test_without_replicas_or_a_state_the_primary_reads(gtid: str) -> None:
    world = make_world(replica_budget=None if gtid else 1.5)
    world.heartbeat()
    world.store.gtid = gtid
    world.cache.get(3)
    assert world.mysql.states == ["", ""]


def test_a_load_without_a_lease_reads_the_primary() -> None:
    """Redis down: no lease, no state, so no replica (and nothing is stored)."""
    world = make_world(replica_budget=1.5)
    world.store.gtid = "0-1-42"
    world.store.up = False
    world.cache.get(3)
    assert world.mysql.states == ["", ""]


def test_a_cold_page_is_loaded_under_the_lease_stored_then_hit(world: World) -> None:
    first = world.cache.get(3)
    assert first.outcome == MISS
    assert world.mysql.queries == 2  # the totals and the page
    assert world.store.leases == {}  # both leases were used up by the fills
    assert world.store.pages[3].read_ms == world.clocks.redis_ms()  # stamped from the lease
    second = world.cache.get(3)
    assert second.outcome == HIT
    assert world.mysql.queries == 2
    assert second.entry == first.entry


def test_past_the_last_page_is_not_found_and_page_one_always_exists(world: World) -> None:
    with pytest.raises(PageNotFound) as raised:
        world.cache.get(11)
    assert raised.value.total_pages == 10
    world.mysql.orders = 0
    world.store.totals = None
    assert world.cache.get(1).total_orders == 0


def test_an_expired_page_is_refilled_when_the_lease_is_ours(world: World) -> None:
    world.cache.get(1)
    world.advance(TTL + 1)
    world.heartbeat()
    world.mysql.version = 1
    assert world.cache.get(1).outcome == MISS
    assert b'"v":1' in world.store.pages[1].orders_json


def test_an_expired_page_whose_lease_is_taken_is_served_stale(world: World) -> None:
    world.cache.get(1)
    world.advance(TTL + 1)
    world.heartbeat()
    world.store.leases["page:1"] = "someone"
    queries = world.mysql.queries
    served = world.cache.get(1)
    assert served.outcome == STALE
    assert world.mysql.queries == queries + 1  # the totals were refilled; the page was not


def test_a_cold_page_waits_for_the_filler_that_holds_the_lease(world: World) -> None:
    world.cache.get(2)  # totals cached
    world.store.invalidate_page(1)
    world.store.leases["page:1"] = "filler"

    def filler_finishes() -> None:
        if world.store.reads >= 3:
            world.store.pages[1] = PageEntry.build(b"[]", 10**15, world.clocks.redis_ms())

    world.store.on_read.append(filler_finishes)
    queries = world.mysql.queries
    assert world.cache.get(1).outcome == HIT
    assert world.mysql.queries == queries


def test_a_filler_that_never_fills_is_replaced_by_our_own_query(world: World) -> None:
    world.cache.get(2)
    world.store.leases["page:1"] = "stuck"
    queries = world.mysql.queries
    assert world.cache.get(1).outcome == MISS
    assert world.mysql.queries == queries + 1
    assert 1 not in world.store.pages  # we had no lease, so nothing was stored


def test_mysql_failing_serves_the_expired_copy_stale(world: World) -> None:
    world.cache.get(1)
    world.advance(TTL + 1)
    world.heartbeat()
    world.mysql.up = False
    assert world.cache.get(1).outcome == STALE


def test_mysql_failing_with_nothing_cached_is_database_unavailable(world: World) -> None:
    world.mysql.up = False
    with pytest.raises(DatabaseUnavailable):
        world.cache.get(1)


def test_redis_down_reads_mysql_and_says_error_then_bypass_when_the_breaker_opens(
    world: World,
) -> None:
    world.store.up = False
    assert world.cache.get(1).outcome == ERROR
    world.store.breaker.state = "open"
    assert world.cache.get(1).outcome == BYPASS
    assert world.mysql.queries == 4


# --- the near cache --------------------------------------------------------------------------


def test_a_live_near_cache_answers_without_redis() -> None:
    world = make_world(near=True)
    world.heartbeat()
    world.cache.get(1)  # miss: filled in Redis, not yet near (the fill is not a Redis read)
    world.cache.get(1)  # hit from Redis, kept near
    reads = world.store.reads
    assert world.cache.get(1).outcome == HIT
    assert world.store.reads == reads


def test_a_silent_feed_bypasses_the_near_cache() -> None:
    world = make_world(near=True)
    world.heartbeat()
    world.cache.get(1)
    world.cache.get(1)
    world.advance(1.0)  # past LIVE_WINDOW with nothing heard
    world.store.checkpoint = world.clocks.redis_ms()
    reads = world.store.reads
    assert world.cache.get(1).outcome == HIT
    assert world.store.reads == reads + 1


def test_an_invalidation_message_drops_the_near_entry() -> None:
    world = make_world(near=True)
    assert world.near is not None
    world.heartbeat()
    world.cache.get(1)
    world.cache.get(1)
    world.near.apply(b"p1")
    world.store.invalidate_page(1)
    world.mysql.version = 5
    served = world.cache.get(1)
    assert served.outcome == MISS
    assert b'"v":5' in served.entry.orders_json


# --- the lag bound ---------------------------------------------------------------------------


def test_with_no_checkpoint_an_entry_is_a_hit_only_within_max_lag_of_its_read(
    world: World,
) -> None:
    world.cache.get(1)
    world.advance(MAX_LAG - 0.1)
    assert world.cache.get(1).outcome == HIT
    world.advance(0.2)
    world.mysql.version = 1
    queries = world.mysql.queries
    served = world.cache.get(1)
    assert served.outcome == MISS  # refilled under the lease
    assert b'"v":1' in served.entry.orders_json
    assert world.mysql.queries == queries + 2  # the totals aged out too


def test_an_advancing_checkpoint_keeps_an_old_entry_a_hit(world: World) -> None:
    world.cache.get(1)
    for _ in range(10):
        world.advance(1.0)
        world.heartbeat()
        assert world.cache.get(1).outcome == HIT
    assert world.mysql.queries == 2


def test_a_checkpoint_that_stops_lets_entries_age_out(world: World) -> None:
    world.cache.get(1)
    world.advance(5)
    world.heartbeat()
    assert world.cache.get(1).outcome == HIT
    world.advance(MAX_LAG + 0.1)  # the invalidator stalls (dead, paused, or Redis paused)
    assert world.cache.get(1).outcome == MISS


def test_a_lagging_entry_whose_lease_is_taken_waits_then_is_stale_with_its_lag(
    world: World,
) -> None:
    world.cache.get(1)
    world.advance(10)
    world.store.leases["page:1"] = "slow filler"
    world.store.leases["totals"] = "slow filler"
    served = world.cache.get(1)
    assert served.outcome == STALE
    assert served.lag == pytest.approx(10, abs=0.01)


def test_a_lagging_entry_is_served_stale_when_mysql_fails(world: World) -> None:
    world.cache.get(1)
    world.advance(30)
    world.mysql.up = False
    served = world.cache.get(1)
    assert served.outcome == STALE
    assert served.lag == pytest.approx(30, abs=0.01)


def test_a_lagging_entry_waits_for_a_filler_and_hits_its_fresh_copy(world: World) -> None:
    world.cache.get(1)
    world.advance(10)
    world.heartbeat()  # totals are vouched for; the page is then invalidated-and-refilling
    world.advance(MAX_LAG + 1)
    world.store.checkpoint = None
    world.freshness.checkpoint_ms = world.freshness.channel_checkpoint_ms = 0
    world.store.leases["page:1"] = "filler"
    world.store.leases["totals"] = "filler"

    def filler_finishes() -> None:
        if world.store.reads >= 4:
            now = world.clocks.redis_ms()
            world.store.pages[1] = PageEntry.build(b"[]", 10**15, now)
            world.store.totals = TotalsEntry(10**15, 95, now)

    world.store.on_read.append(filler_finishes)
    queries = world.mysql.queries
    assert world.cache.get(1).outcome == HIT
    assert world.mysql.queries == queries


def test_the_near_cache_trusts_only_the_checkpoint_heard_on_its_channel() -> None:
    world = make_world(near=True)
    world.heartbeat()
    world.cache.get(1)
    world.cache.get(1)
    world.advance(MAX_LAG + 1)
    assert world.near is not None
    world.near.heard_from_redis()  # the feed is live but carried no checkpoint
    # An MGET of another page saw a newer checkpoint: not proof the near cache applied every
    # invalidation before it, so page 1 must not be a near hit.
    world.store.checkpoint = world.clocks.redis_ms()
    world.freshness.saw_checkpoint(world.store.checkpoint)
    reads = world.store.reads
    assert world.cache.get(1).outcome == HIT
    assert world.store.reads == reads + 1  # it went to Redis


def test_the_near_cache_entry_ages_out_without_checkpoints() -> None:
    world = make_world(near=True)
    world.cache.get(1)
    world.cache.get(1)
    world.advance(MAX_LAG + 0.5)
    assert world.near is not None
    world.near.heard_from_redis()
    assert world.cache.get(1).outcome == MISS


def test_an_entry_without_a_read_time_is_vouched_for_by_the_checkpoint_only(
    world: World,
) -> None:
    world.heartbeat()
    world.store.totals = TotalsEntry(10**15, 95)  # the invalidator's count: no read time
    world.store.pages[1] = PageEntry.build(b"[]", 10**15)
    assert world.cache.get(1).outcome == HIT
    world.advance(MAX_LAG + 0.1)
    assert world.cache.get(1).outcome == MISS


# --- clocks ----------------------------------------------------------------------------------


def test_the_clock_estimate_errs_late_by_half_the_round_trip_and_keeps_the_best_sample() -> None:
    clocks = Clocks()
    clock = RedisClock(monotonic=clocks.monotonic, wall=clocks.wall)
    assert not clock.synced
    assert clock.now_ms() == clocks.wall() * 1000  # unsynced: the wall clock, said so
    clock.observe(clocks.redis_ms() + 10, clocks.t - 0.010, clocks.t + 0.010)  # RTT 20 ms
    assert clock.synced
    assert clock.now_ms() == pytest.approx(clocks.redis_ms() + 10 + 10, abs=0.01)
    clock.observe(clocks.redis_ms(), clocks.t - 0.001, clocks.t + 0.001)  # RTT 2 ms: better
    assert clock.now_ms() == pytest.approx(clocks.redis_ms() + 1, abs=0.01)
    clock.observe(clocks.redis_ms() + 50, clocks.t - 0.05, clocks.t + 0.05)  # worse: ignored
    assert clock.now_ms() == pytest.approx(clocks.redis_ms() + 1, abs=0.01)


def test_an_old_sample_gives_way_to_a_noisier_new_one() -> None:
    clocks = Clocks()
    clock = RedisClock(monotonic=clocks.monotonic, wall=clocks.wall)
    clock.observe(clocks.redis_ms(), clocks.t, clocks.t)
    clocks.t += 3600  # an hour: the exact sample has aged by 360 ms of drift allowance
    clock.observe(clocks.redis_ms() + 5, clocks.t - 0.005, clocks.t + 0.005)
    assert clock.now_ms() == pytest.approx(clocks.redis_ms() + 10, abs=0.01)


def test_the_latest_checkpoint_read_wins_and_the_channel_one_is_kept_apart() -> None:
    freshness = Freshness(MAX_LAG, RedisClock())
    assert freshness.checkpoint_age() is None
    freshness.saw_checkpoint(500, from_channel=True)
    freshness.saw_checkpoint(900)  # an MGET can be ahead of the messages heard so far
    assert (freshness.checkpoint_ms, freshness.channel_checkpoint_ms) == (900, 500)
    freshness.saw_checkpoint(None, from_channel=True)  # a message without one says nothing
    assert (freshness.checkpoint_ms, freshness.channel_checkpoint_ms) == (900, 500)


def test_a_checkpoint_that_moves_back_resets_what_the_worker_believes() -> None:
    """A restore, a failover or a clock step: the worker believes the value Redis holds now,
    not the largest it ever saw (issue 18 case 2)."""
    freshness = Freshness(MAX_LAG, RedisClock())
    freshness.saw_checkpoint(900, from_channel=True)
    freshness.saw_checkpoint(900)
    freshness.saw_checkpoint(400, polled=True)
    assert (freshness.checkpoint_ms, freshness.channel_checkpoint_ms) == (400, 400)
    freshness.saw_checkpoint(None)  # deleted: read as absent in an MGET
    assert freshness.checkpoint_ms == 0
    freshness.saw_checkpoint(900, from_channel=True)
    freshness.saw_checkpoint(None, polled=True)
    assert (freshness.checkpoint_ms, freshness.channel_checkpoint_ms) == (0, 0)


def test_a_checkpoint_ahead_of_redis_clock_vouches_for_nothing_and_is_reported() -> None:
    clocks = Clocks()
    clock = RedisClock(monotonic=clocks.monotonic, wall=clocks.wall)
    clock.observe(clocks.redis_ms(), clocks.t - 0.001, clocks.t + 0.001)
    freshness = Freshness(MAX_LAG, clock)
    old_read = clocks.redis_ms() - 10_000
    freshness.saw_checkpoint(clocks.redis_ms() + 30_000)
    freshness.saw_checkpoint(clocks.redis_ms() + 30_000, from_channel=True)
    now = clock.now_ms()
    assert not freshness.current(old_read, now)
    assert not freshness.near_hit(old_read, old_read)
    assert freshness.lag_ms(old_read, now) >= 10_000
    assert freshness.ahead_seconds() == pytest.approx(30.0, abs=0.01)
    freshness.saw_checkpoint(clocks.redis_ms() - 100, polled=True)
    assert freshness.current(old_read, clock.now_ms())
    assert freshness.ahead_seconds() == 0.0


# --- a namespace no invalidator follows ------------------------------------------------------


def test_an_unfollowed_namespace_is_warned_about_once_and_reported_as_a_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    import structlog
    from prometheus_client import REGISTRY
    from structlog.testing import capture_logs

    from service.cache.near import UNFOLLOWED_AFTER, InvalidationListener
    from service.config import RedisURL

    freshness = Freshness(MAX_LAG, RedisClock())
    listener = InvalidationListener(
        RedisURL("redis://127.0.0.1:1/0", ""), None, CacheKeys("x", 7), freshness, {}
    )
    listener._started = time.monotonic() - UNFOLLOWED_AFTER - 1
    with capture_logs() as logs:
        # The module's logger is cached on first use (cache_logger_on_first_use): after an
        # earlier test used it, it no longer sees capture_logs' processors. A fresh one does.
        monkeypatch.setattr("service.cache.near.log", structlog.get_logger("service.cache.near"))
        listener._report()
        listener._report()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["namespace"] == "x:s7:"
    assert REGISTRY.get_sample_value("orders_cache_checkpoint_seen") == 0
    assert REGISTRY.get_sample_value("orders_cache_checkpoint_age_seconds") > UNFOLLOWED_AFTER
    freshness.saw_checkpoint(int(freshness.clock.now_ms()) - 1500, from_channel=True)
    listener._report()
    assert REGISTRY.get_sample_value("orders_cache_checkpoint_seen") == 1
    assert 1.0 < REGISTRY.get_sample_value("orders_cache_checkpoint_age_seconds") < 5.0
