"""Cache entries round-trip through bytes, and the near cache applies invalidation messages."""

from __future__ import annotations

from service.cache.entries import PageEntry, TotalsEntry
from service.cache.near import NearCache


def test_a_page_entry_keeps_its_json_bytes_untouched() -> None:
    orders = b'[{"id":1,"note":"a|b"}]'
    entry = PageEntry.build(orders, fresh_until_ms=123)
    decoded = PageEntry.decode(entry.encode())
    assert decoded == entry
    assert decoded.orders_json is not orders
    assert decoded.orders_json == orders


def test_the_etag_changes_with_the_content() -> None:
    assert PageEntry.build(b"[1]", 0).etag != PageEntry.build(b"[2]", 0).etag


def test_totals_round_trip() -> None:
    assert TotalsEntry.decode(TotalsEntry(5, 1000).encode()) == TotalsEntry(5, 1000)


def live_near_cache() -> NearCache:
    near = NearCache(max_pages=3)
    near.heard_from_redis()
    return near


def test_the_near_cache_keeps_entries_only_while_no_invalidation_intervened() -> None:
    near = live_near_cache()
    seen = near.version
    near.apply(b"p9")
    near.store(1, PageEntry.build(b"[]", 0), TotalsEntry(0, 1), seen)
    assert near.get(1) == (None, None)


def test_messages_drop_pages_shifts_and_totals() -> None:
    near = NearCache(max_pages=100)
    near.heard_from_redis()
    for page in range(1, 8):
        near.store(page, PageEntry.build(b"[]", 0), TotalsEntry(0, 70), near.version)
    near.apply(b"p2 f5 t")
    kept = [page for page in range(1, 8) if near.get(page)[0] is not None]
    assert kept == [1, 3, 4]
    assert near.get(1)[1] is None


def test_the_near_cache_is_bounded() -> None:
    near = live_near_cache()
    for page in range(1, 6):
        near.store(page, PageEntry.build(b"[]", 0), None, near.version)
    assert [p for p in range(1, 6) if near.get(p)[0] is not None] == [3, 4, 5]


def test_nothing_is_stored_while_the_invalidation_feed_is_silent() -> None:
    near = NearCache(max_pages=3)
    near.store(1, PageEntry.build(b"[]", 0), None, near.version)
    assert near.get(1) == (None, None)


def test_every_entry_writer_gets_the_same_jittered_freshness() -> None:
    from service.cache.entries import TTL_JITTER, fresh_until

    values = {fresh_until(1_000_000, 3600) - 1_000_000 for _ in range(200)}
    assert all(3600_000 * (1 - TTL_JITTER) <= v <= 3600_000 for v in values)
    assert len(values) > 100  # spread, not one instant
