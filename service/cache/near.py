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
"""

from __future__ import annotations

import threading
import time

from service.cache.entries import PageEntry, TotalsEntry
from service.cache.keys import Message
from service.cache.store import redis_client
from service.config import RedisURL
from service.observability import metrics

PING_EVERY = 0.1
LIVE_WINDOW = 0.5
RECONNECT_AFTER = 1.0


class NearCache:
    """Entries of recently served pages and the totals, in this process only."""

    def __init__(self, max_pages: int) -> None:
        self._max_pages = max_pages
        self._pages: dict[int, PageEntry] = {}
        self._totals: TotalsEntry | None = None
        self._lock = threading.Lock()
        self.version = 0
        self._live_until = 0.0

    def live(self) -> bool:
        return time.monotonic() < self._live_until

    def heard_from_redis(self) -> None:
        self._live_until = time.monotonic() + LIVE_WINDOW

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

    def apply(self, raw: bytes) -> None:
        """Apply one invalidation message (format: ``keys.Message``)."""
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

    def clear(self) -> None:
        with self._lock:
            self.version += 1
            self._pages.clear()
            self._totals = None
            metrics.set_near_cache_entries(0)


class InvalidationListener:
    """A daemon thread feeding ``NearCache`` from the invalidation channel."""

    def __init__(self, redis_url: RedisURL, near: NearCache, channel: str) -> None:
        self._redis_url = redis_url
        self._near = near
        self._channel = channel
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="near-cache-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception:  # noqa: BLE001 - whatever broke the feed, the thread must live on
                metrics.count_near_cache_reset("disconnect")
            self._near.lost_redis()
            self._stop.wait(0.2)

    def _listen(self) -> None:
        client = redis_client(self._redis_url, timeout=RECONNECT_AFTER)
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(self._channel)
            last_ping = 0.0
            last_heard = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
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
                if kind == "subscribe":
                    self._near.clear()  # whatever was sent before we (re)subscribed is lost
                elif kind == "message":
                    self._near.apply(message["data"])
                self._near.heard_from_redis()
        finally:
            pubsub.close()
            client.close()
