"""The pages readers ask for, counted in each API worker and published for the inspector.

A dict increment per request (``saw``), bounded to ``LIMIT`` distinct pages between two
publications; the listener thread publishes the ``TOP`` most requested ones every half second
into a sorted set (``keys.hot``) with a short TTL, so the consistency inspector samples what
readers actually hit first (issue 18 case 7). Counts lost to a race between threads only blur
the ranking.
"""

from __future__ import annotations

import heapq
from operator import itemgetter

LIMIT = 4096
TOP = 32


class HotPages:
    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def saw(self, page: int) -> None:
        counts = self._counts
        if page in counts:
            counts[page] += 1
        elif len(counts) < LIMIT:
            counts[page] = 1

    def take(self, top: int = TOP) -> dict[int, int]:
        """The ``top`` most requested pages since the last call, and their counts."""
        counts, self._counts = self._counts, {}
        return dict(heapq.nlargest(top, counts.items(), key=itemgetter(1)))
