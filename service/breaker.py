"""A small circuit breaker shared by the Redis and MySQL clients.

After ``failures`` consecutive failures the breaker opens: calls are refused at once for
``reset_after`` seconds, then one trial call is let through (half open); its success closes the
breaker. Written here rather than taken from a library because it is forty lines, lock-light on the
hot path (a read of two attributes), and reports its state changes to our metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one dependency and refuses calls while it is open."""

    def __init__(
        self,
        name: str,
        failures: int,
        reset_after: float,
        on_change: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failures
        self._reset_after = reset_after
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._state = CLOSED

    @property
    def state(self) -> str:
        return self._state

    def allow(self) -> bool:
        """True if a call may be made now. While open, one caller per period gets a trial."""
        if self._state == CLOSED:
            return True
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self._reset_after:
                self._opened_at = self._clock()  # the trial gets a full period before the next
                self._set(HALF_OPEN)
                return True
            return False

    def success(self) -> None:
        if self._state == CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self._set(CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self._threshold:
                self._opened_at = self._clock()
                self._set(OPEN)

    def _set(self, state: str) -> None:
        if state != self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(self.name, state)
