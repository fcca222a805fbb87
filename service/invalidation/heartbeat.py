"""Heartbeats: progress proven end to end (pt-heartbeat's idea).

Every ``interval`` seconds while this process leads, a row goes into the ``heartbeat`` table and
the local monotonic time it was sent is noted. When the row comes back through the binlog, every
change committed before it has been read: the step that applies it may claim that send time as
its checkpoint (checkpoint.py converts it to Redis' clock). Sequence numbers start at a random
value, so rows an earlier process wrote never match this one's.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
from collections.abc import Iterable

import pymysql

from service.invalidation.changes import RowChange
from service.observability import metrics
from service.observability.logging import get_logger
from service.orders import repository
from service.orders.database import Connection

HEARTBEAT_TABLE = "heartbeat"
FORGET_AFTER_SECONDS = 60  # a heartbeat not back by then never will be (or is no use)

log = get_logger("service.invalidation")


class Heartbeats:
    """Writes heartbeat rows while ``active`` until ``stop``; tells when one seen was sent."""

    def __init__(
        self,
        database: Connection,
        invalidator: int,
        interval: float,
        *,
        active: threading.Event,
        stop: threading.Event,
    ) -> None:
        self._db = database
        self._invalidator = invalidator
        self._interval = interval
        self._active = active
        self._stop = stop
        self._sent: dict[int, float] = {}  # heartbeat seq -> monotonic time it was sent
        self._lock = threading.Lock()
        self._seq = secrets.randbits(62)  # unique per process: old rows never match ours

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="invalidator-heartbeat", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """Write a heartbeat row while active; remember when each was sent."""
        failing = False
        while not self._stop.wait(self._interval):
            if not self._active.is_set():
                continue
            seq = self._note_sent()
            try:
                self._db.run(
                    functools.partial(_write_heartbeat, invalidator=self._invalidator, seq=seq)
                )
                failing = False
            except pymysql.MySQLError as exc:
                metrics.count_invalidator_event("heartbeat_error")
                if not failing:
                    log.warning("heartbeat write failed", error=str(exc))
                failing = True

    def _note_sent(self) -> int:
        self._seq += 1
        sent = time.monotonic()
        with self._lock:
            self._sent[self._seq] = sent
            for old in [s for s, at in self._sent.items() if sent - at > FORGET_AFTER_SECONDS]:
                del self._sent[old]
        return self._seq

    def sent_in(self, changes: Iterable[RowChange]) -> float | None:
        """When the newest of our heartbeats in ``changes`` was sent (None: none of ours)."""
        newest: float | None = None
        for change in changes:
            if change.table != HEARTBEAT_TABLE or change.after is None or len(change.after) != 2:
                continue
            seq = change.after[1]
            with self._lock:
                sent = self._sent.get(seq) if isinstance(seq, int) else None
            if sent is not None and (newest is None or sent > newest):
                newest = sent
        return newest


def _write_heartbeat(cursor: repository.Cursor, *, invalidator: int, seq: int) -> None:
    repository.write_heartbeat(cursor, invalidator, seq)
