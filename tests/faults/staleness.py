"""The bound's traffic: readers that record every answer with when it was asked, writes that
record when each committed, and the judgement "no answer served data older than the bound".
Shared by the bounded-staleness and checkpoint-pause scenarios."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.faults.conftest import PAGE_SIZE, Stack
from tests.support.consistency import assert_consistent, http_fetch
from tests.support.waiting import wait_for

MAX_LAG = 2.0
# One refill plus request queueing on a loaded 2-core machine: the bound is MAX_LAG + one refill;
# the margin is generous so the test holds at 3x slower, and the figure measured is reported.
MARGIN = 1.5
ORDERS = 400  # 40 pages: the checker reads each page several times per round
PAGES = range(1, 11)


@dataclass
class Read:
    began: float
    ended: float
    page: int
    x_cache: str
    first_name: str


@dataclass
class Readers:
    """Threads reading pages 1-10 on fresh connections; every answer is kept."""

    stack: Stack
    threads: int = 4
    reads: list[Read] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Readers:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        while not self._stop.is_set():
            page = rng.choice(PAGES)
            began = time.monotonic()
            try:
                response = self.stack.get(page, timeout=5)
            except requests.RequestException:
                continue
            if response.status_code != 200:
                continue
            first = response.json()["orders"][0]["customer"]["name"]
            self.reads.append(
                Read(began, time.monotonic(), page, response.headers.get("X-Cache", ""), first)
            )


@dataclass
class Writes:
    """Renames of the first order of pages 1-10; a page's history of names, with commit times."""

    stack: Stack
    history: dict[int, list[tuple[float, str]]] = field(default_factory=dict)
    counter: int = 0

    def first_ids(self) -> dict[int, int]:
        return {page: self.stack.sql_page(page)[0][0] for page in PAGES}

    def rename(self, page: int, order_id: int) -> None:
        self.counter += 1
        name = f"lag-{self.counter}"
        self.stack.db.cli(f"UPDATE orders SET customer_name = '{name}' WHERE id = {order_id}")
        self.history.setdefault(page, []).append((time.monotonic(), name))

    def staleness(self, read: Read) -> float:
        """How long before the answer ended had the name it shows been superseded (0: current)."""
        history = self.history.get(read.page, [])
        names = [name for _, name in history]
        # -1: the seeded name, before any write of this test
        shown = names.index(read.first_name) if read.first_name in names else -1
        if shown + 1 >= len(history):
            return 0.0
        superseded_at = history[shown + 1][0]
        return max(0.0, read.ended - superseded_at)


def db_queries(stack: Stack) -> float:
    """MySQL queries the API made (sum over workers): orders_db_query_duration_seconds_count."""
    text = requests.get(f"{stack.base_url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "orders_db_query_duration_seconds":
            total += sum(s.value for s in family.samples if s.name.endswith("_count"))
    return total


def run_writes_under_reads(
    stack: Stack, seconds: float, every: float
) -> tuple[Writes, list[Read], float]:
    """Writers rename orders every ``every`` s for ``seconds`` under 4 readers; returns the
    writes, the reads and the API's MySQL queries per second over the run."""
    writes = Writes(stack)
    ids = writes.first_ids()
    rng = random.Random(11)
    queries_before = db_queries(stack)
    began = time.monotonic()
    with Readers(stack) as readers:
        while time.monotonic() - began < seconds:
            page = rng.choice(PAGES)
            writes.rename(page, ids[page])
            time.sleep(every)
        time.sleep(MAX_LAG + MARGIN)  # the last write's bound passes under the readers' eyes
    elapsed = time.monotonic() - began
    rate = (db_queries(stack) - queries_before) / elapsed
    return writes, readers.reads, rate


def assert_bounded(writes: Writes, reads: list[Read]) -> dict[str, Any]:
    """No HIT or MISS older than the bound; the figures for the report."""
    served = [(read, writes.staleness(read)) for read in reads]
    too_old = [
        (read.page, read.x_cache, round(age, 2))
        for read, age in served
        if age > MAX_LAG + MARGIN and read.x_cache in ("HIT", "MISS")
    ]
    assert not too_old, f"answers older than the bound, not marked STALE: {too_old[:10]}"
    by_outcome: dict[str, int] = {}
    for read in reads:
        by_outcome[read.x_cache] = by_outcome.get(read.x_cache, 0) + 1
    worst = max((age for read, age in served if read.x_cache != "STALE"), default=0.0)
    return {
        "reads": len(reads),
        "writes": writes.counter,
        "hit_rate": round(by_outcome.get("HIT", 0) / max(1, len(reads)), 4),
        "outcomes": by_outcome,
        "worst_staleness_s": round(worst, 3),
    }


def check_every_page(stack: Stack) -> float:
    return assert_consistent(
        http_fetch(stack.base_url),
        stack.db.connect,
        PAGE_SIZE,
        repeats=3,
        settle=MAX_LAG + 10,
    )


def warm(stack: Stack) -> None:
    for page in PAGES:
        wait_for(
            lambda p=page: stack.get(p).headers.get("X-Cache") == "HIT", 20, f"page {page} hit"
        )
