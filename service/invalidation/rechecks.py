"""The recheck queue: each invalidation is applied again ``recheck_delay`` later, and only then
records the binlog position and the checkpoint it covers.

A binlog reader can see a commit a moment before other sessions can read it, so a fill in that
moment could store the old row; the second step drops it. Pure: the caller passes the time
(``time.monotonic()`` in the invalidator, a fake clock in the unit tests).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from service.invalidation.changes import BinlogPosition
from service.invalidation.planner import Plan


@dataclass(frozen=True)
class Pending:
    """A recheck to apply at ``due``: the pages again, and the progress it records."""

    due: float
    plan: Plan | None
    position: BinlogPosition | None
    heartbeat_sent: float | None = None


@dataclass(frozen=True)
class Recheck:
    """Every recheck due at one moment, merged into one step."""

    pages: frozenset[int]
    from_page: int | None
    totals_changed: bool
    position: BinlogPosition | None
    heartbeat_sent: float | None


class RecheckQueue:
    """Rechecks in the order they were scheduled; ``due(now)`` takes the ones whose time came."""

    def __init__(self) -> None:
        self._pending: collections.deque[Pending] = collections.deque()

    def __len__(self) -> int:
        return len(self._pending)

    def clear(self) -> None:
        """Forget every recheck (a new term: a newer leader may have passed their positions)."""
        self._pending.clear()

    def schedule(
        self, due: float, plan: Plan, position: BinlogPosition | None, sent: float | None
    ) -> None:
        """Recheck ``plan``'s pages at ``due``; then record ``position`` and ``sent``."""
        self._pending.append(Pending(due, plan, position, sent))

    def progress(self, now: float, position: BinlogPosition, sent: float | None) -> None:
        """A boundary with nothing to invalidate: recorded with the last recheck before it (so
        never ahead of one), or at once when none is waiting."""
        due = self._pending[-1].due if self._pending else now
        self._pending.append(Pending(due, None, position, sent))

    def due(self, now: float) -> Recheck | None:
        """The rechecks due at ``now`` merged (pages below the lowest shift, the newest position
        and heartbeat), or None when none is due."""
        if not self._pending or self._pending[0].due > now:
            return None
        pages: set[int] = set()
        from_page: int | None = None
        totals_changed = False
        position: BinlogPosition | None = None
        sent: float | None = None
        while self._pending and self._pending[0].due <= now:
            item = self._pending.popleft()
            if item.plan is not None:
                pages |= item.plan.pages
                if item.plan.from_page is not None:
                    from_page = min(from_page or item.plan.from_page, item.plan.from_page)
                totals_changed = totals_changed or item.plan.totals_changed
            position = item.position or position
            sent = item.heartbeat_sent if item.heartbeat_sent is not None else sent
        if from_page is not None:
            pages = {page for page in pages if page < from_page}
        return Recheck(frozenset(pages), from_page, totals_changed, position, sent)
