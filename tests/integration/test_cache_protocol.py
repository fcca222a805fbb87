"""The Lua side of the cache protocol agrees with the Python side (real Redis)."""

from __future__ import annotations

import time

import redis

from service.cache.entries import PageEntry, TotalsEntry
from service.cache.keys import DROP, CacheKeys, Invalidation, Message, SetTotals
from service.cache.store import RedisCache
from service.config import Settings
from service.wiring import build_redis_cache


def _published(cache: RedisCache, change: Invalidation) -> bytes:
    pubsub = cache.client.pubsub()  # type: ignore[no-untyped-call]
    try:
        pubsub.subscribe(cache.keys.channel)
        deadline = time.monotonic() + 10
        while pubsub.get_message(timeout=1) is None and time.monotonic() < deadline:
            pass  # the subscribe confirmation
        cache.invalidate(change)
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1)
            if message and message["type"] == "message":
                return bytes(message["data"])
        raise AssertionError("INVALIDATE published nothing")
    finally:
        pubsub.close()


def test_what_lua_publishes_is_what_python_encodes(settings: Settings) -> None:
    cache = build_redis_cache(settings)
    change = Invalidation(pages=frozenset({4, 2}), from_page=7, totals=SetTotals(TotalsEntry(1, 2)))
    raw = _published(cache, change)
    assert raw == Message(pages=frozenset({2, 4}), from_page=7, totals=True).encode()


def test_the_checkpoint_is_stored_in_redis_clock_and_never_moves_back(
    settings: Settings, shared_redis: redis.Redis
) -> None:
    cache = build_redis_cache(settings)
    seconds, micros = shared_redis.time()
    at = seconds * 1000 + micros // 1000 - 1500
    message = Message.parse(_published(cache, Invalidation(checkpoint_ms=at, totals=DROP)))
    assert message.totals
    assert message.checkpoint_ms == at
    stored = int(shared_redis.get(CacheKeys(settings.cache_prefix, settings.page_size).checkpoint))
    assert stored == at

    older = Message.parse(_published(cache, Invalidation(checkpoint_ms=at - 3_600_000)))
    assert older.checkpoint_ms == stored  # an older proof does not undo a newer one
    plain = Message.parse(_published(cache, Invalidation(pages=frozenset({1}))))
    assert plain.checkpoint_ms == stored  # every message repeats the stored checkpoint


def test_a_checkpoint_beyond_redis_clock_is_refused_and_a_stored_one_in_the_future_replaced(
    settings: Settings, shared_redis: redis.Redis
) -> None:
    """Issue 18 case 2: a step never stores a checkpoint later than Redis' TIME, and a stored one
    ahead of it (a restore, a failover to a host whose clock is behind) is moved back."""
    cache = build_redis_cache(settings)
    key = CacheKeys(settings.cache_prefix, settings.page_size).checkpoint
    seconds, micros = shared_redis.time()
    now = seconds * 1000 + micros // 1000
    refused = Message.parse(
        _published(cache, Invalidation(pages=frozenset({1}), checkpoint_ms=now + 30_000))
    )
    assert refused.checkpoint_ms is None
    assert shared_redis.get(key) is None
    shared_redis.set(key, now + 30_000)
    moved = Message.parse(_published(cache, Invalidation(checkpoint_ms=now - 100)))
    assert moved.checkpoint_ms == now - 100
    assert int(shared_redis.get(key)) == now - 100


def test_a_step_with_an_old_fencing_token_changes_nothing(
    settings: Settings, shared_redis: redis.Redis
) -> None:
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    cache = build_redis_cache(settings)
    shared_redis.set(keys.invalidator_fence, 8)  # a newer invalidator took the lease
    shared_redis.set(keys.page(3), b"entry")
    assert not cache.invalidate(Invalidation(pages=frozenset({3}), position="f:1", fence=7))
    assert shared_redis.get(keys.page(3)) == b"entry"
    assert shared_redis.get(keys.binlog_position) is None
    assert cache.invalidate(Invalidation(pages=frozenset({3}), position="f:1", fence=8))
    assert shared_redis.get(keys.page(3)) is None
    assert cache.invalidate(Invalidation(pages=frozenset({3})))  # no token: not fenced


def test_a_step_that_does_not_follow_the_stored_position_changes_nothing(
    settings: Settings, shared_redis: redis.Redis
) -> None:
    """The chain (issue 19): a step names the ``binlog`` value it follows; after a failover to a
    replica that missed the last steps the stored one is older, and the step is refused (-2)."""
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    cache = build_redis_cache(settings)
    shared_redis.set(keys.binlog_position, "f:1|step=1")
    shared_redis.set(keys.page(3), b"entry")
    lost = Invalidation(pages=frozenset({3}), position="f:3|step=3", expected="f:2|step=2")
    assert cache.apply_step(lost) == -2
    assert shared_redis.get(keys.page(3)) == b"entry"
    assert shared_redis.get(keys.binlog_position) == b"f:1|step=1"
    assert cache.stored_position() == "f:1"
    follows = Invalidation(pages=frozenset({3}), position="f:2|step=2", expected="f:1|step=1")
    assert cache.apply_step(follows) >= 0
    assert shared_redis.get(keys.page(3)) is None
    assert cache.stored_chain() == "f:2|step=2"
    shared_redis.delete(keys.binlog_position)  # a failover to a replica that had none
    assert cache.apply_step(follows) == -2


def test_a_drop_records_its_gtid_state_and_a_lease_taken_after_it_hands_it_out(
    settings: Settings, shared_redis: redis.Redis
) -> None:
    """The replica gate's contract, Lua side: ARGV[9] lands in ``gtid`` in the same step that
    drops the page and its lease; LEASE_AT returns Redis' clock and that state."""
    cache = build_redis_cache(settings)
    before = cache.lease_page(3)
    assert before is not None
    assert before.gtid == ""  # nothing recorded yet: the fill reads the primary
    assert before.at_ms > 0
    cache.invalidate(Invalidation(pages=frozenset({3}), gtid="0-1-42"))
    assert shared_redis.get(cache.keys.gtid) == b"0-1-42|"  # no checkpoint yet to vouch for
    assert not cache.fill_page(3, before.token, _entry())  # its lease went with the drop
    after = cache.lease_page(3)
    assert after is not None
    assert after.gtid == "0-1-42"
    assert after.checkpoint_ms == cache.checkpoint()  # read in the same script
    totals = cache.lease_totals()
    assert totals is not None
    assert totals.gtid == "0-1-42"


def test_a_step_without_a_gtid_state_leaves_the_recorded_one(settings: Settings) -> None:
    cache = build_redis_cache(settings)
    cache.invalidate(Invalidation(pages=frozenset({1}), gtid="0-1-7"))
    cache.invalidate(Invalidation(pages=frozenset({1})))
    lease = cache.lease_page(1)
    assert lease is not None
    assert lease.gtid == "0-1-7"


def _entry() -> PageEntry:
    return PageEntry.build(b"[]", 1, 1)


def test_a_checkpoint_the_gtid_state_does_not_vouch_for_sends_fills_to_the_primary(
    settings: Settings, shared_redis: redis.Redis
) -> None:
    """The state ``gtid`` holds covers every page-changing commit before the checkpoint it was
    recorded (or confirmed) with. A checkpoint moved on by anything else (an invalidator of an
    earlier release, during a rollback, writes checkpoints and no state) is not covered: a lease
    then hands out no state, and the fill reads the primary. The next step of this release that
    stores a checkpoint confirms the state again."""
    cache = build_redis_cache(settings)
    seconds, micros = shared_redis.time()
    now = seconds * 1000 + micros // 1000
    cache.invalidate(Invalidation(pages=frozenset({1}), gtid="0-1-5", checkpoint_ms=now - 5000))
    lease = cache.lease_page(4)
    assert lease is not None
    assert (lease.gtid, lease.checkpoint_ms) == ("0-1-5", now - 5000)
    shared_redis.delete(cache.keys.lease(4))
    shared_redis.set(cache.keys.checkpoint, now - 1000)  # an older release's step
    lease = cache.lease_page(4)
    assert lease is not None
    assert lease.gtid == ""
    shared_redis.delete(cache.keys.lease(4))
    cache.invalidate(Invalidation(checkpoint_ms=now - 500))  # this release's: no newer drop
    lease = cache.lease_page(4)
    assert lease is not None
    assert (lease.gtid, lease.checkpoint_ms) == ("0-1-5", now - 500)
