"""A small circuit breaker shared by the Redis and MySQL clients.

After ``failures`` consecutive failures the breaker opens: calls are refused at once for
``reset_after`` seconds, then one trial call is let through (half open); its success closes the
breaker, its failure opens it again. A trial that ends without a verdict (``abandon()``, e.g. no
pooled connection was free) lets the next caller try, and a trial that never reports at all
lapses after ``reset_after``, so a lost trial can never keep the breaker open for good.

Written here rather than taken from a library because it is fifty lines, lock-light on the hot
path (a read of one attribute), and reports its state changes to our metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    """The states, as metrics and logs spell them."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one dependency and refuses calls while it is open."""

    def __init__(
        self,
        name: str,
        failures: int,
        reset_after: float,
        on_change: Callable[[str, BreakerState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = failures
        self._reset_after = reset_after
        self._on_change = on_change
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._since = 0.0  # when the breaker opened, or when the current trial began
        self._state = BreakerState.CLOSED

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def is_closed(self) -> bool:
        return self._state is BreakerState.CLOSED

    def allow(self) -> bool:
        """True if a call may be made now. While open, one caller per period gets a trial; a
        trial still unreported after a period has lapsed and the next caller gets one."""
        if self._state is BreakerState.CLOSED:
            return True
        with self._lock:
            if self._clock() - self._since >= self._reset_after:
                self._since = self._clock()  # the trial gets a full period before the next
                self._set(BreakerState.HALF_OPEN)
                return True
            return False

    def success(self) -> None:
        if self._state is BreakerState.CLOSED and self._failures == 0:
            return
        with self._lock:
            self._failures = 0
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
                self._since = self._clock()
                self._set(BreakerState.OPEN)

    def abandon(self) -> None:
        """The call ended without telling whether the dependency works: a trial in progress is
        handed to the next caller at once instead of waiting for it to lapse."""
        if self._state is not BreakerState.HALF_OPEN:
            return
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._since = self._clock() - self._reset_after
                self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(self.name, state)
