"""A per-worker near cache: hits without a network round trip, kept exact by Redis pub/sub.

A hit on Redis costs more than Flask itself on this kind of machine (one round trip ~ half the
throughput), so each worker keeps the pages it served recently. Entries are trusted only while the
invalidation feed is live: a listener thread subscribes to the channel the invalidation script
publishes on, and pings Redis every ``PING_EVERY`` seconds. If nothing has been heard for
``LIVE_WINDOW`` seconds (Redis down, paused or partitioned) the near cache is bypassed, and after a
reconnection it is emptied, because messages sent meanwhile were lost.

Stale-set safety: ``version`` moves on every message and reset. A caller notes it before reading
Redis and stores only if it has not moved, so an entry read before an invalidation arrived is never
kept after it.

The listener also keeps the lag bound informed (``service.cache.freshness``), with or without a
near cache: it hands on the checkpoint tokens heard on the channel (after applying the message
they came with), and every ``CLOCK_EVERY`` seconds sends ``TIME`` and ``GET checkpoint`` in one
round trip on a second connection (a subscribed RESP2 connection may only PING), which measures
Redis' clock offset and catches a checkpoint that moved without a message. It publishes the API's
settings (``keys.config``) on every connection and reports a namespace that no invalidator
follows, and the checkpoint's age as a metric.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import redis
import structlog

from service.cache import topology
from service.cache.entries import PageEntry, TotalsEntry
from service.cache.freshness import Freshness
from service.cache.hot import HotPages
from service.cache.keys import CacheKeys, Message
from service.cache.store import redis_client
from service.config import RedisURL
from service.observability import failover_metrics, metrics

PING_EVERY = 0.1
LIVE_WINDOW = 0.5
RECONNECT_AFTER = 1.0
CLOCK_EVERY = 0.5
HOT_KEEP = 128  # pages kept in the hot set (every worker's top ones)
HOT_TTL_MS = 10_000  # the hot set goes when no worker publishes
# A namespace with no checkpoint this long after the listener first connected has no invalidator
# following it (another ORDERS_PAGE_SIZE or ORDERS_CACHE_PREFIX, or none running): say so.
UNFOLLOWED_AFTER = 10.0

log = structlog.get_logger(__name__)


class NearCache:
    """Entries of recently served pages and the totals, in this process only."""

    def __init__(self, max_pages: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_pages = max_pages
        self._clock = clock
        self._pages: dict[int, PageEntry] = {}
        self._totals: TotalsEntry | None = None
        self._lock = threading.Lock()
        self.version = 0
        self._live_until = 0.0
        # A cluster: the groups whose shard channel this worker hears (confirmed subscriptions);
        # None on one server (one channel for everything). A page of another group is not kept.
        self.groups: set[int] | None = None

    def live(self) -> bool:
        return self._clock() < self._live_until

    def heard_from_redis(self) -> None:
        self._live_until = self._clock() + LIVE_WINDOW

    def lost_redis(self) -> None:
        self._live_until = 0.0
        self.clear()

    def get(self, page: int) -> tuple[PageEntry | None, TotalsEntry | None]:
        return self._pages.get(page), self._totals

    def store(
        self, page: int, entry: PageEntry | None, totals: TotalsEntry | None, version: int
    ) -> None:
        """Keep what was read from Redis, unless an invalidation arrived since ``version``."""
        with self._lock:
            if version != self.version or not self.live():
                return
            if totals is not None:
                self._totals = totals
            if entry is not None:
                if len(self._pages) >= self._max_pages and page not in self._pages:
                    self._pages.pop(next(iter(self._pages)))  # oldest inserted first
                self._pages[page] = entry
                metrics.set_near_cache_entries(len(self._pages))

    def apply(self, raw: bytes) -> Message:
        """Apply one invalidation message (format: ``keys.Message``); returns it parsed."""
        message = Message.parse(raw)
        with self._lock:
            self.version += 1
            for page in message.pages:
                self._pages.pop(page, None)
            if message.from_page is not None:
                first = message.from_page
                for page in [p for p in self._pages if p >= first]:
                    del self._pages[page]
            if message.totals:
                self._totals = None
            metrics.set_near_cache_entries(len(self._pages))
        return message

    def clear(self) -> None:
        with self._lock:
            self.version += 1
            self._pages.clear()
            self._totals = None
            metrics.set_near_cache_entries(0)


class InvalidationListener:
    """A daemon thread feeding ``NearCache`` (if any) and ``Freshness`` from Redis."""

    def __init__(
        self,
        redis_url: RedisURL,
        near: NearCache | None,
        keys: CacheKeys,
        freshness: Freshness,
        config: Mapping[str, str | int | float],
        *,
        hot: HotPages | None = None,
    ) -> None:
        self._hot = hot
        self._redis_url = redis_url
        self._near = near
        self._keys = keys
        self._freshness = freshness
        self._config = dict(config)
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._warned = False
        self._warned_ahead = False
        self._primary: str | None = None  # primary_identity() of the last connection
        self._thread = threading.Thread(target=self._run, name="near-cache-listener", daemon=True)

    def start(self) -> None:
        metrics.set_checkpoint_age(None, 0.0)
        failover_metrics.watch_failovers("api")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - whatever broke the feed, the thread lives on
                metrics.count_near_cache_reset("disconnect")
                log.info("the invalidation feed broke; reconnecting", error=type(exc).__name__)
            if self._near is not None:
                self._near.lost_redis()
            self._report()
            self._stop.wait(0.2)

    def _listen(self) -> None:
        client = redis_client(self._redis_url, timeout=RECONNECT_AFTER)
        if self._keys.grouped:
            self._listen_sharded(client)
            return
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._keys.channel)
            self._notice_primary(client)
            self._publish_config(client)
            last_ping = last_clock = 0.0
            last_heard = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_clock >= CLOCK_EVERY:
                    self._poll(client)
                    self._publish_hot(client)
                    last_clock = now
                    self._report()
                if now - last_ping >= PING_EVERY:
                    pubsub.ping()
                    last_ping = now
                message = pubsub.get_message(timeout=PING_EVERY)
                if message is None:
                    if time.monotonic() - last_heard > RECONNECT_AFTER:
                        return
                    continue
                last_heard = time.monotonic()
                kind = message["type"]
                if kind == "subscribe" and self._near is not None:
                    self._near.clear()  # whatever was sent before we (re)subscribed is lost
                elif kind == "message":
                    if self._near is not None:
                        parsed = self._near.apply(message["data"])
                    else:
                        parsed = Message.parse(message["data"])
                    self._freshness.saw_checkpoint(parsed.checkpoint_ms, from_channel=True)
                if self._near is not None:
                    self._near.heard_from_redis()
        finally:
            pubsub.close()
            client.close()

    def _listen_sharded(self, client: redis.Redis) -> None:
        """A cluster: each group's invalidations on its shard channel (SSUBSCRIBE, one
        connection per shard), the groups' list re-read at every poll. Any (re)subscription or
        server-sent unsubscription (a slot moved) empties the near cache: what was published
        meanwhile is lost. A pong or a message from any shard counts as hearing Redis."""
        pubsub = cast(Any, client).pubsub()
        subscribed: set[int] = set()
        if self._near is not None:
            self._near.groups = set()  # this connection's subscriptions are confirmed anew
        try:
            self._notice_primary(client)
            self._publish_config(client)
            last_ping = last_clock = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if now - last_clock >= CLOCK_EVERY:
                    self._poll(client)
                    self._publish_hot(client)
                    self._subscribe_groups(client, pubsub, subscribed)
                    last_clock = now
                    self._report()
                if now - last_ping >= PING_EVERY:
                    for shard in list(pubsub.node_pubsub_mapping.values()):
                        shard.ping()
                    last_ping = now
                message = pubsub.get_sharded_message(timeout=PING_EVERY / 4)
                if message is not None:
                    self._sharded(message, subscribed)
        finally:
            pubsub.close()
            client.close()

    def _subscribe_groups(self, client: redis.Redis, pubsub: Any, subscribed: set[int]) -> None:
        groups = {int(g) for g in cast(list[bytes], client.zrange(self._keys.groups, 0, -1))}
        new = sorted(groups - subscribed)
        if new:
            pubsub.ssubscribe(*(self._keys.group(g).channel for g in new))
            subscribed.update(new)

    def _sharded(self, message: dict[str, Any], subscribed: set[int]) -> None:
        kind = message["type"]
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        group = self._keys.group_of_channel(message["channel"]) if message["channel"] else None
        if kind in ("ssubscribe", "sunsubscribe"):
            if self._near is not None:
                self._near.clear()
                heard = self._near.groups if self._near.groups is not None else set()
                if group is not None and kind == "ssubscribe":
                    heard.add(group)
                elif group is not None:
                    heard.discard(group)
                self._near.groups = heard
            self._freshness.forget_groups()
            if kind == "sunsubscribe" and group is not None:
                subscribed.discard(group)  # subscribed again at the next poll
        elif kind == "smessage" and group is not None:
            if self._near is not None:
                parsed = self._near.apply(message["data"])
            else:
                parsed = Message.parse(message["data"])
            self._freshness.saw_group_checkpoint(group, parsed.checkpoint_ms)
        if self._near is not None:
            self._near.heard_from_redis()

    def _notice_primary(self, client: redis.Redis) -> None:
        """On each connection: a primary other than the last one (a failover, which may have
        lost invalidations the near cache applied and entries it holds) empties the near cache
        and forgets the checkpoints heard there (the poll that follows reads the new one's)."""
        primary = topology.primary_identity(client)
        if self._primary is not None and primary != self._primary:
            failover_metrics.count_failover("api")
            log.warning("the Redis primary changed; the near cache is emptied")
            if self._near is not None:
                self._near.clear()
            self._freshness.saw_checkpoint(None, polled=True)
        self._primary = primary

    def _publish_config(self, client: redis.Redis) -> None:
        """The API's settings under ``keys.config``; best effort (a Redis paused for writes, as
        in a failover, must not stop the listener: this is retried on the next connection)."""
        try:
            client.hset(self._keys.config, items=[x for pair in self._config.items() for x in pair])
        except redis.RedisError as exc:
            log.info("could not publish the cache settings", error=str(exc))

    def _poll(self, client: redis.Redis) -> None:
        """``TIME`` and the checkpoint in one round trip: the clock offset and its error. On a
        cluster, the oldest group checkpoint (what every group has applied) afterwards."""
        if self._keys.grouped:
            # A cluster pipelines no TIME: it is asked alone, of the control slot's primary.
            cluster = cast(Any, client)
            node = cluster.get_node_from_key(self._keys.groups)
            sent = time.monotonic()
            seconds, micros = cluster.execute_command("TIME", target_nodes=node)
            received = time.monotonic()
            self._freshness.clock.observe(seconds * 1000.0 + micros / 1000.0, sent, received)
            oldest = self._group_checkpoints(client)
            self._freshness.saw_checkpoint(oldest, polled=True)
            age = self._freshness.checkpoint_age()
            metrics.set_group_checkpoint_age(age)
            return
        pipe = client.pipeline(transaction=False)
        pipe.time()
        pipe.get(self._keys.checkpoint)
        sent = time.monotonic()
        (seconds, micros), raw = pipe.execute()
        received = time.monotonic()
        self._freshness.clock.observe(seconds * 1000.0 + micros / 1000.0, sent, received)
        self._freshness.saw_checkpoint(int(cast(bytes, raw)) if raw else None, polled=True)

    def _group_checkpoints(self, client: redis.Redis) -> int | None:
        """Every registered group's checkpoint (each lowers what its channel vouches for, as
        the flat poll does); answers the oldest, None if a group has none. The reads are split
        by slot and sent one pipeline per node."""
        groups = [int(g) for g in cast(list[bytes], client.zrange(self._keys.groups, 0, -1))]
        if not groups:
            return None
        keys = [self._keys.group(group).checkpoint for group in groups]
        values = cast(list[bytes | None], cast(Any, client).mget_nonatomic(keys))
        found = {g: int(v) if v else 0 for g, v in zip(groups, values, strict=True)}
        self._freshness.polled_groups(found)
        return None if 0 in found.values() else min(found.values())

    def _publish_hot(self, client: redis.Redis) -> None:
        """The pages this worker served most since the last call, for the inspector (hot.py);
        best effort, like the settings."""
        if self._hot is None:
            return
        top = self._hot.take()
        if not top:
            return
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self._keys.hot, {str(page): count for page, count in top.items()})
        pipe.zremrangebyrank(self._keys.hot, 0, -(HOT_KEEP + 1))
        pipe.pexpire(self._keys.hot, HOT_TTL_MS)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.info("could not publish the pages readers hit", error=str(exc))

    def _report(self) -> None:
        """Publish the checkpoint's age; warn once if no invalidator follows this namespace."""
        age = self._freshness.checkpoint_age()
        waited = time.monotonic() - self._started
        ahead = self._freshness.ahead_seconds()
        metrics.set_checkpoint_age(age, waited, ahead)
        if ahead > 0 and not self._warned_ahead:
            log.error(
                "the invalidation checkpoint is ahead of Redis' clock and is not trusted "
                "(a restore, a failover to a host whose clock is behind, or a forged value)",
                ahead_seconds=round(ahead, 3),
            )
        self._warned_ahead = ahead > 0
        if age is None and waited > UNFOLLOWED_AFTER and not self._warned:
            self._warned = True
            log.warning(
                "no invalidator follows this cache namespace: entries are refilled after "
                "ORDERS_CACHE_MAX_LAG instead of being invalidated",
                namespace=self._keys.base,
                max_lag=self._freshness.max_lag_ms / 1000,
            )
