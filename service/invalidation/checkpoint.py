"""The checkpoint's moment, in Redis' clock: what a step may claim is applied.

Invariant (docs/guarantees.md): the checkpoint stored in Redis is never later, in Redis' clock,
than the moment the newest heartbeat covered by the applied steps was sent. Every commit before
that heartbeat's send is earlier in the binlog, so it was read and applied before the step that
stores the checkpoint. The conversion from the invalidator's monotonic clock to Redis' takes a
``TIME`` reading for *each attempt* of the step, after the events were read:

    vouched = redis_time - (received_at - sent) * (1 + DRIFT) - 1 ms

``redis_time`` was read no later than ``received_at``, so this is a lower bound of Redis' clock at
``sent`` whatever Redis did meanwhile. A reading is never reused by a retry, so a pause, an
outage or a failover to a host with another clock cannot make a step claim the time it waited
(issue 18 case 1: an age computed once and resent after ``CLIENT PAUSE WRITE 8000`` claimed
8 s of unread commits). Survives: Redis pauses, timeouts, restarts and failovers between the
reading and the step (the script also refuses a checkpoint beyond its own ``TIME``). Does not
survive: a Redis clock stepped forward between the reading and the step by more than the
bound, or drift above ``DRIFT`` between the two clocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DRIFT = 1e-4  # 100 ppm, as the workers' RedisClock allows


def vouched_ms(sent: float, redis_ms: float, received_at: float) -> int:
    """The earliest Redis time (ms) it can have been at monotonic ``sent``, from a ``TIME``
    answer ``redis_ms`` received at monotonic ``received_at``."""
    elapsed_ms = max(0.0, received_at - sent) * 1000.0
    return int(redis_ms - elapsed_ms * (1.0 + DRIFT)) - 1


class Checkpointer:
    """Converts a heartbeat's send time to Redis' clock, with a fresh reading each call."""

    def __init__(
        self,
        time_command: Callable[[], tuple[int, int]],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._time = time_command
        self._monotonic = monotonic

    def vouch(self, sent: float) -> int:
        """Redis-clock ms that every commit before ``sent`` (monotonic) preceded."""
        seconds, micros = self._time()
        received = self._monotonic()
        return vouched_ms(sent, seconds * 1000.0 + micros / 1000.0, received)
