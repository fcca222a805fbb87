"""Waiting in tests: poll a condition until it holds or a generous deadline passes.

The one definition of ``wait_for`` (and, in ``servers``, of ``free_port``): tests wait on a
condition with a bound that holds on a machine three times slower, never on a bare sleep.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pymysql
import redis
import requests

# A condition that cannot be evaluated yet (a server still starting) is simply not true yet.
NOT_YET = (requests.RequestException, redis.RedisError, pymysql.MySQLError, OSError)


def wait_for(
    condition: Callable[[], object],
    timeout: float = 15.0,
    what: str = "the condition",
    interval: float = 0.05,
) -> float:
    """Poll ``condition`` until it is truthy; returns the seconds it took. Raises
    ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    began = time.monotonic()
    while True:
        with contextlib.suppress(*NOT_YET):
            if condition():
                return time.monotonic() - began
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
