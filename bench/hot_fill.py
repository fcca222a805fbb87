"""The hot-set curve's Redis: a private ``redis-server``, filled with real pages, fast.

A hot set of 1M pages is ~3 GB of Redis: it belongs in a Redis of the bench's own, started with an
explicit ``maxmemory`` and ``noeviction`` (a fill that does not fit fails loudly instead of
evicting the pages being measured), never in the shared one.

Filling through the API runs at a few hundred misses/s here (an hour for 1M pages), so the pages
are written directly, and honestly: the rows are the bench table's, read in id order (rank order,
the order pages are cut in) from the page the service's own pagination locates; each page is
encoded by the service's code (``orders_json``, ``PageEntry``, ``TotalsEntry``, ``fresh_until``)
under the service's key layout (``CacheKeys``), stamped with Redis' clock as its read time as the
lease script would, added to the page index as a lease would, and written with pipelined SETs.
A sample of the pages is then compared byte for byte with what the service's loader returns.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

import psutil
import redis

from bench.servers import BenchError
from service.cache.entries import PageEntry, TotalsEntry, fresh_until
from service.cache.keys import CacheKeys
from service.config import Settings
from service.orders import repository
from service.orders.database import connect
from service.orders.repository import ORDER_COLUMNS, Order
from service.orders.representation import orders_json
from tests.support.servers import RedisServer

GIB = 2**30
HEADROOM = 3 * GIB  # left to the rest of the machine (other work, MariaDB, the service)
# Redis memory per page of 10 orders, page index included (measured: 3,317 B at 100k pages)
ESTIMATED_BYTES_PER_PAGE = 3500


def own_redis(maxmemory: int) -> RedisServer:
    """A throwaway ``redis-server`` (the tests' own, ``tests.support.servers``) holding at most
    ``maxmemory`` bytes and refusing writes past it, so a fill that does not fit fails loudly
    instead of evicting pages the curve is measuring."""
    return RedisServer.create(
        extra_args=["--maxmemory", str(maxmemory), "--maxmemory-policy", "noeviction"]
    )


def redis_client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=60)


def used_memory(client: redis.Redis) -> int:
    return int(cast(dict[str, Any], client.info("memory"))["used_memory"])


def maxmemory_for(pages: int, bytes_per_page: int, available: int | None = None) -> int:
    """Redis' limit for ``pages``: their estimated size plus a quarter (the index, allocator
    slack), never more than the machine can spare beyond ``HEADROOM``; 0 if it cannot spare even
    one GiB."""
    spare = (psutil.virtual_memory().available if available is None else available) - HEADROOM
    wanted = int(pages * bytes_per_page * 1.25) + GIB
    limit = min(wanted, spare)
    return limit if limit >= GIB else 0


def page_batches(first_page: int, last_page: int, pages_per_batch: int) -> Iterator[range]:
    """Consecutive page ranges covering ``first_page..last_page``, each at most
    ``pages_per_batch`` long (one SELECT and one pipeline each)."""
    if pages_per_batch < 1:
        raise ValueError("pages_per_batch must be at least 1")
    start = first_page
    while start <= last_page:
        end = min(last_page, start + pages_per_batch - 1)
        yield range(start, end + 1)
        start = end + 1


def cut_pages(rows: list[Order], pages: range, page_size: int) -> Iterator[tuple[int, list[Order]]]:
    """``rows`` (consecutive in rank order, starting at the first row of ``pages[0]``) cut into
    pages; a short last page ends the table, and pages past it get nothing."""
    for offset, page in enumerate(pages):
        chunk = rows[offset * page_size : (offset + 1) * page_size]
        if not chunk:
            return
        yield page, chunk


def parse_row(line: str) -> Order:
    """One tab-separated row of ``ORDER_COLUMNS`` as the ``mariadb`` batch client prints it, in
    the types PyMySQL gives the service (``verify`` checks the pages come out the same)."""
    f = line.rstrip("\n").split("\t")
    return Order(
        int(f[0]),
        int(f[1]),
        f[2],
        f[3],
        f[4],
        Decimal(f[5]),
        f[6],
        int(f[7]),
        datetime.fromisoformat(f[8]),
        datetime.fromisoformat(f[9]),
    )


def stream_orders(settings: Settings, first_id: int, limit: int) -> Iterator[Order]:
    """``limit`` orders from ``first_id`` on, in id order, from one streaming query.

    Through the ``mariadb`` client in batch mode: PyMySQL decodes rows in Python at ~25k/s on
    this machine, which made the reads, not Redis, the cost of filling 1M pages."""
    url = settings.database_url
    binary = shutil.which("mariadb") or shutil.which("mysql")
    if binary is None:
        raise BenchError("the mariadb client is needed to fill the hot set")
    query = (
        f"SELECT {ORDER_COLUMNS} FROM orders WHERE id >= {int(first_id)} "
        f"ORDER BY id LIMIT {int(limit)}"
    )
    with subprocess.Popen(
        [
            binary,
            "--no-defaults",
            "--batch",
            "--skip-column-names",
            "--quick",
            f"--host={url.host}",
            f"--port={url.port}",
            f"--user={url.user}",
            url.database,
            "-e",
            query,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "MYSQL_PWD": url.password},
        text=True,
        bufsize=1 << 20,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            for line in proc.stdout:
                yield parse_row(line)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.terminate()
            error = proc.stderr.read()
            code = proc.wait()
        if code != 0:
            raise BenchError(f"reading the hot set failed: {error.strip()[-400:]}")


class Filler:
    """Writes pages ``1..n`` of the service's database into its namespace, in increasing runs.

    Everything comes from the settings the service itself runs with (``Settings.from_env`` of
    its environment): database URL, key prefix, page size, TTL and stale window."""

    def __init__(self, settings: Settings, client: redis.Redis, pages_per_batch: int = 500) -> None:
        self.settings = settings
        self.client = client
        self.keys = CacheKeys(settings.cache_prefix, settings.page_size)
        self.ttl = settings.cache_ttl
        self.hard_ttl = settings.cache_ttl + settings.cache_max_stale  # as wiring.py sets it
        self.pages_per_batch = pages_per_batch
        self.filled = 0  # pages 1..filled are in Redis

    def _connect(self) -> Any:
        return connect(self.settings.database_url, timeout=600)

    def _redis_ms(self) -> int:
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def fill_to(self, last_page: int) -> dict[str, Any]:
        """Write pages ``filled + 1 .. last_page`` and the totals; returns pages, seconds and
        bytes written."""
        started = time.monotonic()
        first_page = self.filled + 1
        written = 0
        size = self.keys.page_size
        with self._connect() as conn, conn.cursor() as cur:
            total = repository.count_orders(cur)
            located = (
                repository.fetch_page(cur, first_page, size) if first_page <= last_page else []
            )
        if first_page <= last_page and not located:
            raise BenchError(f"the hot-set table has no page {first_page}")
        if located:
            read_ms = self._redis_ms()  # before the read, as the lease script stamps it
            rows = stream_orders(self.settings, located[0].id, (last_page - first_page + 1) * size)
            for pages in page_batches(first_page, last_page, self.pages_per_batch):
                batch = list(itertools.islice(rows, len(pages) * size))
                if not batch:
                    break
                now_ms = int(time.time() * 1000)
                pipe = self.client.pipeline(transaction=False)
                done = []
                for page, orders in cut_pages(batch, pages, size):
                    entry = PageEntry.build(
                        orders_json(orders), fresh_until(now_ms, self.ttl), read_ms
                    ).encode()
                    written += len(entry)
                    pipe.set(self.keys.page(page), entry, ex=self.hard_ttl)
                    done.append(page)
                pipe.zadd(self.keys.index, {str(p): p for p in done})
                pipe.execute()
                self.filled = done[-1]
        read_ms = self._redis_ms()
        totals = TotalsEntry(fresh_until(int(time.time() * 1000), self.ttl), total, read_ms)
        self.client.set(self.keys.totals, totals.encode(), ex=self.hard_ttl)
        return {
            "pages": self.filled,
            "pages_written": max(0, self.filled - first_page + 1),
            "seconds": round(time.monotonic() - started, 1),
            "entry_bytes_written": written,
        }

    def verify(self, last_page: int, samples: int = 20, seed: int = 13) -> int:
        """Compare the first, the last and ``samples`` random pages of ``1..last_page`` with what
        the service's loader makes of the same rows; returns how many were checked."""
        rng = random.Random(seed)
        pages = {1, last_page, *(rng.randint(1, last_page) for _ in range(samples))}
        with self._connect() as conn, conn.cursor() as cur:
            for page in sorted(pages):
                raw = self.client.get(self.keys.page(page))
                if raw is None:
                    raise BenchError(f"hot-set fill: page {page} missing from Redis")
                expected = orders_json(repository.fetch_page(cur, page, self.keys.page_size))
                if PageEntry.decode(cast(bytes, raw)).orders_json != expected:
                    raise BenchError(f"hot-set fill: page {page} differs from the service's loader")
        return len(pages)
