"""One active invalidator among replicas: a lease in Redis with a fencing token.

The active replica holds ``invalidator:lease`` (SET NX PX, renewed every third of its TTL by a
thread) and the fencing token ACQUIRE handed it (INCR of ``invalidator:fence``). Every
invalidation step carries the token and the INVALIDATE script refuses it once a newer leader
took a larger one, so a leader that was paused (SIGSTOP, a long GC, a partition) past its
lease can apply nothing afterwards, whatever its own clock believes. The lease TTL is the
failover time's main part: a standby polls for a free lease every quarter of it. A leader that
stops cleanly releases the lease, so its standby takes over at its next poll.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time

from service.cache.store import CacheUnavailable, RedisCache
from service.observability.logging import get_logger

log = get_logger("service.invalidation")


class Lease:
    """This process's claim to be the active invalidator."""

    def __init__(self, cache: RedisCache, ttl_seconds: float) -> None:
        self._cache = cache
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._owner = secrets.token_hex(8)
        self._keys = [cache.keys.invalidator_lease, cache.keys.invalidator_fence]
        self.token: int | None = None
        self._valid_until = 0.0
        self._renewer: threading.Thread | None = None
        self._lost = threading.Event()

    @property
    def _value(self) -> str:
        return f"{self._owner}:{self.token}"

    def acquire(self) -> bool:
        """Take the lease if it is free; starts the renewal thread. Raises CacheUnavailable."""
        began = time.monotonic()
        token = int(
            self._cache.client_call(
                "lease",
                lambda: self._cache.run_function(
                    "acquire_lease", self._keys, [self._owner, self._ttl_ms]
                ),
            )
        )
        if not token:
            return False
        if not self._cache.claim_fence(token):
            return False  # a group holds a newer leader's fence (a cluster): stand by
        self.token = token
        self._valid_until = began + self._ttl_ms / 1000
        self._lost.clear()
        self._renewer = threading.Thread(
            target=self._keep_renewing, args=(token,), name="invalidator-lease", daemon=True
        )
        self._renewer.start()
        return True

    def refence(self) -> bool:
        """After a primary change: a new fencing token on the new primary if the lease is ours
        there (steps still carrying the old one are then refused); False if it is not (stand
        by and acquire again). Raises CacheUnavailable."""
        token = self.token
        if token is None:
            return False
        began = time.monotonic()
        new = int(
            self._cache.client_call(
                "lease",
                lambda: self._cache.run_function(
                    "refence_lease",
                    self._keys,
                    [f"{self._owner}:{token}", self._owner, self._ttl_ms],
                ),
            )
        )
        if not new:
            self._lost.set()
            return False
        self.token = new  # the renewer of the old token ends; a new one renews this one
        self._valid_until = began + self._ttl_ms / 1000
        self._renewer = threading.Thread(
            target=self._keep_renewing, args=(new,), name="invalidator-lease", daemon=True
        )
        self._renewer.start()
        return True

    def held(self) -> bool:
        """Still ours by our own clock (the script's fence is the real guard)."""
        return (
            self.token is not None
            and not self._lost.is_set()
            and time.monotonic() < self._valid_until
        )

    def _keep_renewing(self, token: int) -> None:
        interval = self._ttl_ms / 3000
        while self.token == token and not self._lost.wait(interval):
            began = time.monotonic()
            try:
                renewed = self._cache.client_call(
                    "lease",
                    lambda: self._cache.run_function(
                        "renew_lease", self._keys[:1], [self._value, self._ttl_ms]
                    ),
                )
            except CacheUnavailable as exc:
                log.warning("cannot renew the invalidator lease", error=str(exc))
                continue
            if not renewed:
                log.warning("the invalidator lease was lost", fence=token)
                self._lost.set()
                return
            self._valid_until = began + self._ttl_ms / 1000

    def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes over at its next poll."""
        token, self.token = self.token, None
        self._lost.set()
        if token is None:
            return
        with contextlib.suppress(CacheUnavailable):  # it lapses by itself otherwise
            self._cache.client_call(
                "lease",
                lambda: self._cache.run_function(
                    "release_lease", self._keys[:1], [f"{self._owner}:{token}"]
                ),
            )
