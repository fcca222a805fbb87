"""What a cache entry holds and how it is laid out in bytes.

A page entry is ``fresh_until_ms|etag|`` followed by the page's orders as a finished JSON array,
so a hit splits off two small fields and never decodes or re-encodes JSON. Totals are kept apart
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

    def encode(self) -> bytes:
        return b"%d|%s|%s" % (self.fresh_until_ms, self.etag.encode(), self.orders_json)

    @classmethod
    def decode(cls, raw: bytes) -> PageEntry:
        fresh_until, etag, orders_json = raw.split(b"|", 2)
        return cls(int(fresh_until), etag.decode(), orders_json)

    @classmethod
    def build(cls, orders_json: bytes, fresh_until_ms: int) -> PageEntry:
        digest = hashlib.blake2b(orders_json, digest_size=8).hexdigest()
        return cls(fresh_until_ms, digest, orders_json)


@dataclass(frozen=True, slots=True)
class TotalsEntry:
    """How many orders exist, with the time that count stops being fresh."""

    fresh_until_ms: int
    total_orders: int

    def encode(self) -> bytes:
        return b"%d|%d" % (self.fresh_until_ms, self.total_orders)

    @classmethod
    def decode(cls, raw: bytes) -> TotalsEntry:
        fresh_until, total = raw.split(b"|", 1)
        return cls(int(fresh_until), int(total))
