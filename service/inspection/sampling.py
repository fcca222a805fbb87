"""What the inspector looks at, and what it may spend on MySQL doing so.

Readers' pages first: the API counts the pages it is asked for and publishes the most requested
ones every half second (``keys.hot``, service/cache/hot.py), so a wrong page someone reads is
seen in the next round. Then a tour of every page number from 1 to the last page, in an order that
changes each tour (a stride coprime with the page count from a random start), so pages the index
lost are visited too, and every page is visited once per tour; plus a few pages at random from
the index. Only a cached entry the API would serve as a hit costs a MySQL read; the rest cost
one Redis round trip each.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable


class QueryBudget:
    """A token bucket: ``rate`` MySQL queries a second, at most ``burst`` saved up (and spent
    at once by the first round)."""

    def __init__(self, rate: float, burst: float, monotonic: Callable[[], float]) -> None:
        self._rate = rate
        self._burst = max(1.0, burst)
        self._monotonic = monotonic
        self._tokens = self._burst
        self._at = monotonic()

    def refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now

    def take(self) -> bool:
        """Spend one query if the budget allows it."""
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    @property
    def available(self) -> bool:
        return self._tokens >= 1.0


class Tour:
    """Every page number of 1..pages once per tour, in an order that differs between tours."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._pages = 0
        self._start = self._stride = self._step = 0

    def _restart(self, pages: int) -> None:
        self._pages = pages
        self._start = self._rng.randrange(pages)
        stride = self._rng.randrange(1, pages + 1)
        while math.gcd(stride, pages) != 1:
            stride += 1
        self._stride = stride
        self._step = 0

    def next(self, pages: int, count: int) -> list[int]:
        """The next ``count`` page numbers of the tour over ``pages`` pages."""
        if pages <= 0:
            return []
        if pages != self._pages or self._step >= self._pages:
            self._restart(pages)
        found: list[int] = []
        while len(found) < min(count, pages):
            if self._step >= self._pages:
                self._restart(pages)
            found.append((self._start + self._step * self._stride) % self._pages + 1)
            self._step += 1
        return found


Span = tuple[int, int]  # (first page, pages): one Redis read, and at most one MySQL read


def candidates(hot: list[int], blocks: list[Span], indexed: list[int]) -> list[Span]:
    """Hot pages and the tour's blocks in turn (so neither starves the other of the budget),
    then the index's random pages; a single page once."""
    singles = [(page, 1) for page in hot if page > 0]
    interleaved: list[Span] = []
    for n in range(max(len(singles), len(blocks))):
        interleaved.extend(singles[n : n + 1])
        interleaved.extend(blocks[n : n + 1])
    seen: set[int] = set()
    ordered: list[Span] = []
    for span in (*interleaved, *((page, 1) for page in indexed if page > 0)):
        if span[1] == 1 and span[0] in seen:
            continue
        seen.add(span[0])
        ordered.append(span)
    return ordered
