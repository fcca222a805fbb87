"""Where a miss is read: a read replica that has applied every invalidated write, else the primary.

A fill may store only data at least as new as every invalidation applied before its lease was
taken (docs/guarantees.md, "MySQL replicas"). The lease hands out the GTID state of the
invalidator's last drop; ``ReplicaReads.run`` waits for it on one replica (chosen in turn among
those whose breaker is closed) for at most ``ORDERS_DATABASE_REPLICA_WAIT``, in the same
connection as the read, and reads there. No state known, no replica, a replica not there in
time or failing: the primary reads it, as it did before replicas existed. Writes, migrations
and the invalidator's repairs never come here: they use the primary's own connections.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from service.observability import replica_metrics
from service.observability.logging import get_logger
from service.orders import gtid_waits
from service.orders.database import Database, DatabaseUnavailable

T = TypeVar("T")
SKIP_LAG_MARGIN_SECONDS = 1.0
log = get_logger("service.orders.replicas")


@dataclass(frozen=True)
class Replica:
    """One read replica: its name in metrics and /status (``host:port``) and its own pool,
    timeouts and breaker."""

    name: str
    database: Database


@dataclass
class _Read:
    """What a replica answered: the result, once it had applied the state."""

    value: Any = None
    reached: bool = False


class ReplicaReads:
    """The request path's reads of a miss, spread over the replicas, gated by GTID."""

    def __init__(
        self,
        primary: Database,
        replicas: Sequence[Replica] = (),
        *,
        wait: float,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.primary = primary
        self.replicas = tuple(replicas)
        self._wait = wait
        # A replica measured further behind than this is not asked at all (the primary reads
        # at once instead of after a wait that would time out); a second on top of the wait
        # covers the heartbeat's half-second steps and the probe's age.
        self.skip_lag = wait + SKIP_LAG_MARGIN_SECONDS
        self._clock = clock
        self._turn = itertools.count()
        self.lag: dict[str, float | None] = {replica.name: None for replica in self.replicas}
        replica_metrics.prepare(tuple(replica.name for replica in self.replicas))

    def run(self, query_name: str, work: Callable[[Any], T], state: str = "") -> T:
        """``work(cursor)`` on a replica that has applied ``state``, or else on the primary.
        Raises ``DatabaseUnavailable`` only when the primary fails too."""
        replica = self._choose() if gtid_waits.wait_statement(state, self._wait) else None
        if replica is not None:
            try:
                read = replica.database.run(
                    query_name, lambda cursor: self._waited(replica, cursor, state, work)
                )
            except DatabaseUnavailable as exc:
                log.info(
                    "replica read failed; reading the primary",
                    replica=replica.name,
                    reason=exc.reason,
                )
            else:
                if read.reached:
                    replica_metrics.count_fill("replica")
                    return read.value  # type: ignore[no-any-return]
        result = self.primary.run(query_name, work)
        replica_metrics.count_fill("primary")
        return result

    def _choose(self) -> Replica | None:
        """The next replica in turn that is not known to lag past ``skip_lag`` and whose
        breaker is closed; if no such breaker is closed, the next in turn (its breaker lets
        one trial through per period, and refuses the others at no cost); None if every
        replica lags (the primary reads)."""
        if not self.replicas:
            return None
        start = next(self._turn) % len(self.replicas)
        ordered = self.replicas[start:] + self.replicas[:start]
        near = [r for r in ordered if (self.lag.get(r.name) or 0.0) <= self.skip_lag]
        if not near:
            return None
        return next((r for r in near if r.database.breaker.is_closed), near[0])

    def _waited(self, replica: Replica, cursor: Any, state: str, work: Callable[[Any], T]) -> _Read:
        started = self._clock()
        reached = gtid_waits.wait_for(cursor, state, self._wait)
        replica_metrics.observe_wait(replica.name, self._clock() - started, reached)
        return _Read(work(cursor), True) if reached else _Read()

    def check(self) -> None:
        """One round of health and lag: each replica's newest heartbeat against the primary's.
        A replica that fails is down (its breaker knows it too); the primary failing leaves the
        lags as they were."""
        try:
            newest = self.primary.run("heartbeat", gtid_waits.latest_heartbeat)
        except DatabaseUnavailable:
            newest = None
        for replica in self.replicas:
            try:
                seen = replica.database.run("heartbeat", gtid_waits.latest_heartbeat)
            except DatabaseUnavailable:
                replica_metrics.set_up(replica.name, False)
                continue
            replica_metrics.set_up(replica.name, replica.database.breaker.is_closed)
            if newest is not None:
                lag = max(0.0, newest - seen) if seen is not None else None
                self.lag[replica.name] = lag
                if lag is not None:
                    replica_metrics.set_lag(replica.name, lag)

    def status(self) -> list[dict[str, Any]]:
        """Each replica's breaker state and last measured lag (``/status``, ``/readyz``)."""
        return [
            {
                "replica": replica.name,
                "state": str(replica.database.breaker.state),
                "lag_seconds": self.lag.get(replica.name),
            }
            for replica in self.replicas
        ]

    def close(self) -> None:
        for replica in self.replicas:
            replica.database.close()


class ReplicaMonitor:
    """Calls ``ReplicaReads.check`` every ``interval`` seconds in a daemon thread (API process)."""

    def __init__(self, reads: ReplicaReads, interval: float = 2.0) -> None:
        self._reads = reads
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._reads.replicas or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="replica-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._reads.check()
            except Exception as exc:  # noqa: BLE001 - a monitor never takes the worker down
                log.warning("replica check failed", error=f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
