"""What a cache entry holds and how it is laid out in bytes.

A page entry is ``fresh_until_ms|etag|read_ms|`` followed by the page's orders as a finished JSON
array, so a hit splits off three small fields and never decodes or re-encodes JSON. ``read_ms`` is
when the data was read from MySQL, in Redis' clock (``service.cache.freshness``); entries written
before it existed (``fresh_until_ms|etag|[...``) decode with ``read_ms`` 0, "known current only up
to the checkpoint". Totals are ``fresh_until_ms|total`` or ``fresh_until_ms|total|read_ms``: the
invalidator's counts carry no read time (its checkpoint covers them). Totals are kept apart
from the pages: a new order changes the totals on every page, but full pages stay cached.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

TTL_JITTER = 0.1


def fresh_until(now_ms: int, ttl_seconds: int) -> int:
    """When an entry made now stops being fresh: after 90-100 % of the TTL, at random, so entries
    made together (a cold start, a burst of invalidations) expire spread over six minutes of an
    hour instead of in the same second. Every writer of entries uses this."""
    return now_ms + int(ttl_seconds * 1000 * (1.0 - TTL_JITTER * random.random()))  # noqa: S311


@dataclass(frozen=True, slots=True)
class PageEntry:
    """The orders of one page, serialised, with the time they stop being fresh."""

    fresh_until_ms: int
    etag: str
    orders_json: bytes
    read_ms: int = 0

    def encode(self) -> bytes:
        return b"%d|%s|%d|%s" % (
            self.fresh_until_ms,
            self.etag.encode(),
            self.read_ms,
            self.orders_json,
        )

    @classmethod
    def decode(cls, raw: bytes) -> PageEntry:
        fresh_until, etag, rest = raw.split(b"|", 2)
        if rest[:1] == b"[":  # the layout without a read time (the orders are a JSON array)
            return cls(int(fresh_until), etag.decode(), rest)
        read_ms, orders_json = rest.split(b"|", 1)
        return cls(int(fresh_until), etag.decode(), orders_json, int(read_ms))

    @classmethod
    def build(cls, orders_json: bytes, fresh_until_ms: int, read_ms: int = 0) -> PageEntry:
        digest = hashlib.blake2b(orders_json, digest_size=8).hexdigest()
        return cls(fresh_until_ms, digest, orders_json, read_ms)


@dataclass(frozen=True, slots=True)
class TotalsEntry:
    """How many orders exist, with the time that count stops being fresh."""

    fresh_until_ms: int
    total_orders: int
    read_ms: int = 0

    def encode(self) -> bytes:
        if self.read_ms:
            return b"%d|%d|%d" % (self.fresh_until_ms, self.total_orders, self.read_ms)
        return b"%d|%d" % (self.fresh_until_ms, self.total_orders)

    @classmethod
    def decode(cls, raw: bytes) -> TotalsEntry:
        fields = raw.split(b"|", 2)
        read_ms = int(fields[2]) if len(fields) == 3 else 0
        return cls(int(fields[0]), int(fields[1]), read_ms)
