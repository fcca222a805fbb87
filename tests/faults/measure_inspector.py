"""By hand, not in ``make test``: how fast the inspector confirms and repairs a wrong page, and its
MySQL queries a second, with 200, 2,000 and 20,000 cached pages (issue 18, Measure).

    .venv/bin/python -m tests.faults.measure_inspector [pages ...]

Each size: a database of its own on the shared MariaDB, a namespace of its own on the shared Redis
(deleted after), every page cached through the app, a thread playing a healthy invalidator (the
checkpoint = Redis now every 50 ms), the inspector at its defaults (ORDERS_INSPECTOR_PAGES 100,
ORDERS_INSPECTOR_MAX_QUERIES 20, ORDERS_INSPECTOR_INTERVAL 1, ORDERS_CACHE_MAX_LAG 2). A wrong page
in the service's own format is planted twice: once on a page a reader keeps asking for (the hot
case), once on a page nobody reads and removed from the index (found by the tour only).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

import redis

from service import close_app, create_app
from service.cache.entries import PageEntry
from service.cache.keys import CacheKeys
from service.config import Settings
from service.inspection.inspector import Inspector
from service.orders import loaders
from service.wiring import build_database, build_redis_cache
from tests.support.inspection import Heartbeat, counted
from tests.support.shared import (
    SHARED_MYSQL,
    SHARED_REDIS,
    delete_namespace,
    drop_database,
    make_database,
)

GIVE_UP = 420.0


def _plant(client: redis.Redis, keys: CacheKeys, page: int) -> None:
    wrong = PageEntry.build(b'[{"id":-1}]', int(time.time() * 1000) + 600_000)
    client.set(keys.page(page), wrong.encode())


def measure(pages: int) -> dict[str, object]:
    url = make_database(SHARED_MYSQL, pages * 10)
    prefix = f"measure_{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": url,
            "ORDERS_REDIS_URL": SHARED_REDIS,
            "ORDERS_CACHE_PREFIX": prefix,
            "ORDERS_LOG_LEVEL": "error",
        }
    )
    keys = CacheKeys(prefix, settings.page_size)
    app = create_app(settings)
    shared = redis.Redis.from_url(SHARED_REDIS)
    database = build_database(settings)
    queries: list[float] = []
    load_page = loaders.page_loader(database, settings.page_size)
    load_total = loaders.total_loader(database)

    def page_query(page: int) -> bytes:
        queries.append(time.monotonic())
        return load_page(page)

    def total_query() -> int:
        queries.append(time.monotonic())
        return load_total()

    figures: dict[str, object] = {"pages": pages}
    try:
        client = app.test_client()
        began = time.monotonic()
        for page in range(1, pages + 1):
            client.get(f"/orders/{page}")
        figures["fill_s"] = round(time.monotonic() - began, 1)
        inspector = Inspector(
            build_redis_cache(settings),
            load_page=page_query,
            load_total=total_query,
            pages=settings.inspector_pages,
            max_lag=settings.cache_max_lag,
            max_queries=settings.inspector_max_queries,
            interval=settings.inspector_interval,
            load_pages=loaders.pages_loader(database, settings.page_size),
        )
        stop = threading.Event()
        rounds = threading.Thread(
            target=inspector.run, args=(stop, settings.inspector_interval), daemon=True
        )
        with Heartbeat(shared, keys.checkpoint):
            rounds.start()
            started = time.monotonic()
            hot_page, cold_page = max(1, pages // 3), max(2, pages - 7)
            figures["hot"] = _one(shared, keys, hot_page, reader=client)
            shared.zrem(keys.index, cold_page)
            figures["cold_missing_from_index"] = _one(shared, keys, cold_page, reader=None)
            elapsed = time.monotonic() - started
            stop.set()
            rounds.join(timeout=10)
        figures["mysql_queries_per_s"] = round(len(queries) / elapsed, 2)
    finally:
        database.close()
        close_app(app)
        shared.close()
        delete_namespace(SHARED_REDIS, prefix)
        drop_database(url)
    return figures


def _one(shared: redis.Redis, keys: CacheKeys, page: int, reader: object) -> dict[str, object]:
    before = counted("inconsistencies", "page"), counted("repairs", "page")
    _plant(shared, keys, page)
    planted = time.monotonic()
    confirmed = repaired = None
    while time.monotonic() - planted < GIVE_UP:
        if reader is not None:
            reader.get(f"/orders/{page}")  # type: ignore[attr-defined]
        if confirmed is None and counted("inconsistencies", "page") > before[0]:
            confirmed = time.monotonic() - planted
        if confirmed is not None and counted("repairs", "page") > before[1]:
            repaired = time.monotonic() - planted
            break
        time.sleep(0.02)
    return {
        "page": page,
        "confirmed_s": None if confirmed is None else round(confirmed, 2),
        "repaired_s": None if repaired is None else round(repaired, 2),
    }


if __name__ == "__main__":
    sizes = [int(arg) for arg in sys.argv[1:]] or [200, 2000, 20000]
    for size in sizes:
        print(json.dumps(measure(size)), flush=True)
