"""What the cache's Redis calls answer, decoded: a fill lease, one read's entries, and the pages
a scan found recent. An entry or a checkpoint that does not decode is bad input from a server:
it is read as missing (and logged), never a failed request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, cast

import structlog

from service.cache.entries import PageEntry, TotalsEntry

E = TypeVar("E", PageEntry, TotalsEntry)
_log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Lease:
    """A fill lease we hold: its token, Redis' clock (ms) when it was taken, and, read with it,
    the GTID state of the invalidator's last step ('' = none known: the fill reads the primary)
    and the stored checkpoint (None: none)."""

    token: str
    at_ms: int
    gtid: str = ""
    checkpoint_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """One MGET: the page entry, the totals and the invalidator's checkpoint (None: absent)."""

    page: PageEntry | None
    totals: TotalsEntry | None
    checkpoint_ms: int | None


def lease_answer(answer: Any) -> tuple[int, str, int | None]:
    """LEASE_AT's ``{ms, gtid, checkpoint}`` (0: not taken). A bare number (a library loaded
    before the GTID joined it) reads as a lease with no GTID: the fill goes to the primary."""
    if not isinstance(answer, list | tuple):
        return int(answer or 0), "", None
    texts = [raw.decode() if isinstance(raw, bytes) else str(raw or "") for raw in answer[1:3]]
    gtid, checkpoint = (*texts, "", "")[:2]
    return int(answer[0]) if answer else 0, gtid, _checkpoint(checkpoint)


def recent(pages: list[int], raw: list[Any], since_ms: int) -> list[int]:
    """Of ``pages`` (their entries ``raw``), those with no readable entry or one read at or
    after ``since_ms``."""
    found = []
    for page, value in zip(pages, raw, strict=True):
        entry = _decoded(PageEntry, value, f"page {page}")
        if entry is None or entry.read_ms >= since_ms:
            found.append(page)
    return found


def block(numbers: range, raw: list[Any], clock: Any) -> tuple[list[Lookup], int]:
    """A block read: the pages' entries then the totals and the checkpoint (one MGET), and the
    TIME read with them (seconds, microseconds), as lookups and Redis ms."""
    totals, checkpoint = raw[-2], raw[-1]
    lookups = [lookup(n, page, totals, checkpoint) for n, page in zip(numbers, raw, strict=False)]
    seconds, micros = clock
    return lookups, int(seconds) * 1000 + int(micros) // 1000


def lookup(page: int, raw_page: Any, raw_totals: Any, raw_checkpoint: Any) -> Lookup:
    """The entries of one read. An entry that does not decode (written by something else, or
    cut short) is bad input from a server: it is read as missing, so the request refills it
    under the lease and the fill overwrites it, instead of failing every request for the page."""
    return Lookup(
        _decoded(PageEntry, raw_page, f"page {page}"),
        _decoded(TotalsEntry, raw_totals, "totals"),
        _checkpoint(raw_checkpoint),
    )


def _decoded(kind: type[E], raw: Any, what: str) -> E | None:
    if not raw:
        return None
    try:
        return kind.decode(cast(bytes, raw))
    except (ValueError, UnicodeDecodeError):
        _log.warning("a cache entry could not be read; it is refilled", entry=what)
        return None


def _checkpoint(raw: Any) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        _log.warning("the invalidator's checkpoint could not be read; it is ignored")
        return None
