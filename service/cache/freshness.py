"""How far behind MySQL a cached entry may be, in Redis' clock: the ``ORDERS_CACHE_MAX_LAG`` bound.

An entry's data is known current up to the later of two moments:

- when it was read from MySQL (``read_ms``, stamped by the lease script with Redis' ``TIME``
  just before the query starts, so it is never later than the snapshot the query saw), and
- the invalidator's checkpoint: "every change committed before this moment has been applied".
  An entry still present after that step was not touched by any change before it.

If Redis' now minus that moment exceeds the bound, the entry is not served as a hit: it is refilled
(or served marked stale when MySQL fails). With no invalidator at all (no checkpoint) the bound
still holds, because the read time alone ages out.

Clock skew: every comparison is between two readings of Redis' clock. Pods never compare their
own wall clock with MySQL's or Redis'. A worker learns Redis' clock as an offset from its own
*monotonic* clock, measured with ``TIME``: ``offset = redis_time - midpoint of the call``, wrong by
at most half the round trip, which is added to "now" so the estimate errs towards refilling. A
worker that never managed to measure the offset falls back to its wall clock (offset 0, unknown
error) and says so in ``synced``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    """One offset measurement: Redis minus local monotonic ms, and its error bound (RTT/2)."""

    offset_ms: float
    error_ms: float


class RedisClock:
    """An estimate of Redis' ``TIME`` in ms from this process's monotonic clock.

    Keeps the sample with the smallest error among recent ones (a slow round trip tells less);
    samples age: an old sample's error grows by the drift allowance (``DRIFT``), so a new sample
    with a larger round trip still replaces it after a while.
    """

    DRIFT = 1e-4  # 100 ppm: far above what a quartz clock drifts, so the bound stays honest

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._wall = wall
        self._sample: Sample | None = None
        self._taken_at = 0.0
        # now_ms() = monotonic * slope + intercept: the sample, its error and the drift
        # allowance folded into two numbers, replaced together (one tuple store).
        self._fit: tuple[float, float] | None = None
        self._lock = threading.Lock()

    @property
    def synced(self) -> bool:
        return self._sample is not None

    def observe(self, redis_ms: float, sent_at: float, received_at: float) -> None:
        """Record one ``TIME`` answer; ``sent_at``/``received_at`` are this clock's monotonic
        readings (seconds) around the call."""
        midpoint_ms = (sent_at + received_at) * 500.0
        sample = Sample(redis_ms - midpoint_ms, max(0.0, (received_at - sent_at) * 500.0))
        with self._lock:
            if self._sample is None or sample.error_ms <= self._current_error(received_at):
                self._sample = sample
                self._taken_at = received_at
                drift = 1000.0 * self.DRIFT
                self._fit = (
                    1000.0 + drift,
                    sample.offset_ms + sample.error_ms - received_at * drift,
                )

    def _current_error(self, at: float) -> float:
        assert self._sample is not None
        return self._sample.error_ms + (at - self._taken_at) * 1000.0 * self.DRIFT

    def now_ms(self) -> float:
        """The latest Redis time it can be now (estimate plus error): errs towards "older"."""
        fit = self._fit
        if fit is None:
            return self._wall() * 1000.0
        return self._monotonic() * fit[0] + fit[1]


class Freshness:
    """The bound check, with what this worker knows of the checkpoint and of Redis' clock.

    Two checkpoints are kept. ``checkpoint_ms`` is the latest read from Redis (an MGET, the
    listener's poll) and judges what was just read from Redis: an entry present in the same MGET
    as checkpoint C survived every invalidation before C. ``channel_checkpoint_ms`` is the latest
    heard on the invalidation channel, *after* the near cache applied every message published
    before it; only that one may vouch for near-cache entries (a checkpoint learnt from an MGET
    can be ahead of invalidation messages this worker has not processed yet).

    Invariant (docs/guarantees.md), kept here: a checkpoint vouches for nothing beyond what Redis
    holds now and Redis' clock allows.

    - The latest reading wins, not the largest ever seen: a checkpoint that moves back (a
      restore, a failover, a clock step) or disappears resets what this worker believes (the
      listener's poll, every ``CLOCK_EVERY``, also lowers the channel's). A reading that loses
      a race to an older one only makes the worker more careful.
    - A checkpoint later than Redis' current time (``clock.now_ms()``, which errs late) cannot
      have been written by an invalidator keeping the invariant of
      service/invalidation/checkpoint.py: it vouches for nothing (entries age by their read time
      alone) and ``ahead_seconds`` reports it (metric, ``/readyz``, alert).

    Survives: a forged or restored checkpoint, a Redis clock stepped back, a deleted one. Does
    not survive: a forged checkpoint in the past but later than the truth (within the bound of
    now), which no reader can tell from a real one.
    """

    def __init__(self, max_lag: float, clock: RedisClock | None = None) -> None:
        self.max_lag_ms = max_lag * 1000.0
        self.clock = clock or RedisClock()
        self.checkpoint_ms = 0  # 0: none seen (or none trusted) yet
        self.channel_checkpoint_ms = 0

    def saw_checkpoint(
        self, checkpoint_ms: int | None, *, from_channel: bool = False, polled: bool = False
    ) -> None:
        """Remember a checkpoint read from Redis (``None``: absent). From the channel, ``None``
        means the message carried none and says nothing; a poll also lowers the channel's (int
        stores are atomic under the GIL)."""
        if from_channel:
            if checkpoint_ms is not None:
                self.channel_checkpoint_ms = self.checkpoint_ms = checkpoint_ms
            return
        value = checkpoint_ms or 0
        self.checkpoint_ms = value
        if polled and value < self.channel_checkpoint_ms:
            self.channel_checkpoint_ms = value

    @property
    def checkpoint_seen(self) -> bool:
        return self.checkpoint_ms > 0

    def _trusted(self, checkpoint_ms: int, now_ms: float) -> int:
        return checkpoint_ms if checkpoint_ms <= now_ms else 0

    def lag_ms(self, read_ms: int, now_ms: float, checkpoint_ms: int | None = -1) -> float:
        """How far behind MySQL data read at ``read_ms`` may be at ``now_ms`` (Redis clock).
        ``checkpoint_ms``: the checkpoint read with the entry (None: absent), which alone may
        vouch for it (on a cluster each group has its own); -1: the latest this worker read."""
        checkpoint = self.checkpoint_ms if checkpoint_ms == -1 else (checkpoint_ms or 0)
        return now_ms - max(read_ms, self._trusted(checkpoint, now_ms))

    def current(self, read_ms: int, now_ms: float, checkpoint_ms: int | None = -1) -> bool:
        """True if data from Redis read at ``read_ms`` is within the bound at ``now_ms``."""
        return self.lag_ms(read_ms, now_ms, checkpoint_ms) <= self.max_lag_ms

    def near_hit(self, page_read_ms: int, totals_read_ms: int) -> bool:
        """A near-cache page and its totals within the bound now, vouched for by the channel's
        checkpoint only: the hit path's one check (both are within it iff the older one is)."""
        # Conditionals rather than min()/max(): this runs on every near-cache hit, and the two
        # builtin calls cost about as much as the rest of the check.
        vouched = page_read_ms if page_read_ms < totals_read_ms else totals_read_ms
        now = self.clock.now_ms()
        checkpoint = self.channel_checkpoint_ms
        if vouched < checkpoint <= now:
            vouched = checkpoint
        return now - vouched <= self.max_lag_ms

    def checkpoint_age(self) -> float | None:
        """Seconds since the newest checkpoint this worker has seen, or None if it saw none."""
        if not self.checkpoint_seen:
            return None
        return max(0.0, (self.clock.now_ms() - self.checkpoint_ms) / 1000.0)

    def ahead_seconds(self) -> float:
        """How far the checkpoint read from Redis is ahead of Redis' clock (0: not ahead)."""
        ahead = max(self.checkpoint_ms, self.channel_checkpoint_ms) - self.clock.now_ms()
        return max(0.0, ahead / 1000.0)
