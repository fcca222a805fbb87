"""Traffic for the fault tests: reader threads that keep every answer, and the small helpers
the scenarios share (one place, so no test module imports another)."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from tests.faults.conftest import Stack, wait_until

INSERT_SQL = (
    "INSERT INTO orders (customer_id, customer_name, customer_email, status, amount, currency, "
    "item_count) VALUES (7, '{name}', 'faults@example.com', 'pending', 12.34, 'EUR', 1)"
)


def warm(stack: Stack, page: int, times: int = 3) -> str:
    """Read a page a few times so Redis and the workers' near caches hold it; its last X-Cache."""
    outcome = ""
    for _ in range(times):
        response = stack.get(page)
        outcome = response.headers.get("X-Cache", str(response.status_code))
    return outcome


@dataclass
class Sample:
    at: float
    page: int
    status: int  # 0: no HTTP answer (connection error or timeout)
    cache: str
    seconds: float
    error: str = ""


@dataclass
class Load:
    """Reader threads on pages chosen by ``pick``; every answer is kept as a Sample."""

    stack: Stack
    pick: Callable[[random.Random], int]
    threads: int = 3
    pause: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(timeout=30)

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        while not self._stop.is_set():
            self.samples.append(fetch(self.stack, self.pick(rng)))
            if self.pause:
                time.sleep(self.pause)

    def between(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


def fetch(stack: Stack, page: int) -> Sample:
    began = time.monotonic()
    try:
        response = stack.get(page, timeout=5)
    except requests.RequestException as exc:
        return Sample(began, page, 0, "", time.monotonic() - began, type(exc).__name__)
    return Sample(
        began,
        page,
        response.status_code,
        response.headers.get("X-Cache", ""),
        time.monotonic() - began,
        "" if response.status_code < 500 else response.text[:200],
    )


def failures(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.status == 0 or s.status >= 500]


def count_by(samples: list[Sample], attribute: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sample in samples:
        key = str(getattr(sample, attribute))
        counts[key] = counts.get(key, 0) + 1
    return counts


def disagreeing(stack: Stack) -> list[int | str]:
    """Pages (and "totals") whose API answer differs from MySQL's, read in one snapshot."""
    pages = range(1, stack.total_pages() + 1)
    expected = stack.sql_pages(pages)
    (count,) = stack.sql("SELECT COUNT(*) FROM orders")[0]
    wrong: list[int | str] = []
    for page in pages:
        response = stack.get(page)
        body = response.json() if response.status_code == 200 else {}
        if body.get("total_orders") != int(count) and "totals" not in wrong:
            wrong.append("totals")
        rows = [
            (int(o["id"]), str(o["customer"]["name"]), str(o["status"]), str(o["total"]["amount"]))
            for o in body.get("orders", [])
        ]
        if rows != expected[page]:
            wrong.append(page)
    return wrong


def assert_consistent(stack: Stack, within: float = 30) -> float:
    """Wait until the API agrees with MySQL everywhere, then check twice more (both workers)."""
    took = wait_until(lambda: not disagreeing(stack), within, "every page to agree with MySQL")
    for _ in range(2):
        assert not disagreeing(stack)
    return took


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def sample(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None
