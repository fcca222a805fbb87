"""The cache's health at a glance, without Prometheus: figures read from ``/metrics`` text.

The status page (``/status`` on the admin port) and ``orders-service stats`` compute the same
figures the same way: each sample parses the Prometheus text of the API's ``/metrics`` (the very
bytes a scrape gets) and of the invalidator's and the inspector's, and rates come from two samples,
as ``rate()`` would. No second bookkeeping beside the metrics, so the page cannot disagree with
them. The history is kept by whoever samples (a worker while someone views the page, the CLI
while it watches): nothing is sampled while nobody looks.
"""

from __future__ import annotations

import itertools
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Requests to these routes are the operator's own (probes, scrapes, this page): not traffic.
NOT_TRAFFIC = frozenset(("/healthz", "/readyz", "/metrics", "/status"))
SERVED = ("hit", "miss", "stale", "error")  # outcomes that count in the hit rate (not bypass)
HISTORY = 120  # samples kept: 10 minutes at the page's 5 s refresh
SOURCE_TIMEOUT = 1.0
INSPECTOR = "orders_inspector_"


@dataclass
class Figures:
    """One sample: counters as totals since start, gauges as they were at ``at``."""

    at: float
    requests: float = 0.0
    outcomes: dict[str, float] = field(default_factory=dict)
    db_queries: float = 0.0
    db_errors: float = 0.0
    checkpoint_age: float | None = None
    near_cache_entries: float | None = None
    breakers: dict[str, dict[str, float]] = field(default_factory=dict)
    fills: dict[str, float] = field(default_factory=dict)  # by source: replica, primary
    replicas: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> up, lag
    invalidation_lag: float | None = None
    invalidations: float | None = None
    inspector_checks: float | None = None
    inspector_mismatches: float | None = None
    inspector_inconsistencies: float | None = None
    gtid_positions: float | None = None  # 1: resumes by GTID, 0: GTIDs off (invalidator)
    primary_changes: float | None = None
    unreachable: list[str] = field(default_factory=list)

    @property
    def hits(self) -> float:
        return self.outcomes.get("hit", 0.0)

    @property
    def misses(self) -> float:
        return self.outcomes.get("miss", 0.0)


def _add(current: float | None, value: float) -> float:
    return (current or 0.0) + value


# Families summed over processes and label values, and families whose last value is the figure.
_SUMMED = {
    "orders_db_query_duration_seconds_count": "db_queries",
    "orders_db_errors_total": "db_errors",
    "orders_near_cache_entries": "near_cache_entries",
    "orders_invalidations_total": "invalidations",
    "orders_inspector_checks_total": "inspector_checks",
    "orders_inspector_mismatches_total": "inspector_mismatches",
    "orders_inspector_inconsistencies_total": "inspector_inconsistencies",
    "orders_invalidator_primary_changes_total": "primary_changes",
}
_REPLICA = {"orders_db_replica_up": "up", "orders_db_replica_lag_seconds": "lag"}
_LATEST = {
    "orders_cache_checkpoint_age_seconds": "checkpoint_age",
    "orders_invalidation_lag_seconds": "invalidation_lag",
    "orders_invalidator_gtid_positions": "gtid_positions",
}


def read(figures: Figures, text: str) -> Figures:
    """Add what one process's exposition text says to ``figures``."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if labels.get("component") == "inspector" and not name.startswith(INSPECTOR):
                continue  # the inspector's own reads are not the API's traffic
            if name in _SUMMED:
                field = _SUMMED[name]
                setattr(figures, field, _add(getattr(figures, field), value))
            elif name in _LATEST:
                setattr(figures, _LATEST[name], value)
            elif name == "http_request_duration_seconds_count":
                if labels.get("route") not in NOT_TRAFFIC:
                    figures.requests += value
            elif name == "orders_cache_requests_total":
                outcome = labels.get("outcome", "")
                figures.outcomes[outcome] = figures.outcomes.get(outcome, 0.0) + value
            elif name == "orders_cache_fills_total":
                source = labels.get("source", "?")
                figures.fills[source] = figures.fills.get(source, 0.0) + value
            elif name in _REPLICA:
                replica = figures.replicas.setdefault(labels.get("replica", "?"), {})
                replica[_REPLICA[name]] = value
            elif name == "orders_circuit_breaker_state":
                states = figures.breakers.setdefault(labels.get("dependency", "?"), {})
                states[labels.get("state", "?")] = value
    return figures


def fetch(url: str, timeout: float = SOURCE_TIMEOUT) -> str:
    """The exposition text at ``url`` (an http URL of a /metrics endpoint)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http URL: {url}")
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - checked above
        return str(answer.read().decode("utf-8"))


def sample(own_text: str | None, sources: Iterable[str], at: float | None = None) -> Figures:
    """One sample: this process's text (the API's /metrics), then each other source's; a source
    that does not answer is named in ``unreachable`` rather than failing the whole sample."""
    figures = Figures(at=time.time() if at is None else at)
    if own_text is not None:
        read(figures, own_text)
    for url in sources:
        try:
            read(figures, fetch(url))
        except (OSError, ValueError):
            figures.unreachable.append(url)
    return figures


@dataclass(frozen=True)
class Rates:
    """What happened between two samples, per second (None: nothing to divide)."""

    seconds: float
    requests: float
    hit_ratio: float | None
    misses: float
    db_queries: float
    inspector_checks: float | None


def rates(before: Figures, after: Figures) -> Rates | None:
    """``rate()`` over two samples; None when they are not in order. A counter that went down
    (a restart) counts from zero, as Prometheus does."""
    seconds = after.at - before.at
    if seconds <= 0:
        return None

    def delta(new: float, old: float) -> float:
        return new - old if new >= old else new

    served = {o: delta(after.outcomes.get(o, 0), before.outcomes.get(o, 0)) for o in SERVED}
    total = sum(served.values())
    checks = None
    if after.inspector_checks is not None:
        checks = delta(after.inspector_checks, before.inspector_checks or 0) / seconds
    return Rates(
        seconds=seconds,
        requests=delta(after.requests, before.requests) / seconds,
        hit_ratio=served["hit"] / total if total else None,
        misses=served["miss"] / seconds,
        db_queries=delta(after.db_queries, before.db_queries) / seconds,
        inspector_checks=checks,
    )


class History:
    """The last ``HISTORY`` samples; ``add`` keeps at most one per ``min_step`` seconds."""

    def __init__(self, min_step: float = 1.0, size: int = HISTORY) -> None:
        self._samples: deque[Figures] = deque(maxlen=size)
        self._min_step = min_step

    def add(self, figures: Figures) -> None:
        if self._samples and figures.at - self._samples[-1].at < self._min_step:
            self._samples[-1] = figures  # too close to the last one: it replaces it
        else:
            self._samples.append(figures)

    @property
    def samples(self) -> Sequence[Figures]:
        return tuple(self._samples)

    def latest(self) -> Figures | None:
        return self._samples[-1] if self._samples else None

    def series(self) -> list[tuple[float, Rates]]:
        """Rates between consecutive samples, each at the time of the later one."""
        points = []
        samples = self.samples
        for before, after in itertools.pairwise(samples):
            found = rates(before, after)
            if found is not None:
                points.append((after.at, found))
        return points


def gtid_resume(value: float | None) -> str:
    """What the invalidator does on a MySQL promotion, from orders_invalidator_gtid_positions."""
    if value is None:
        return "n/a"
    return "follows by GTID" if value else "GTIDs off: a promotion clears the cache"


def _number(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def replica_text(seen: dict[str, float]) -> str:
    """One replica as the page and the CLI show it: up or down (the primary serves), its lag."""
    state = "up" if seen.get("up", 0) >= 1 else "down (the primary serves its reads)"
    return f"{state}  lag {_number(seen.get('lag'), ' s', 2)}"


def lines(figures: Figures, last: Rates | None) -> list[str]:
    """The figures as terminal lines (``orders-service stats``), in the page's order."""
    hit = None if last is None or last.hit_ratio is None else last.hit_ratio * 100
    out = [
        f"requests/s        {_number(last.requests if last else None)}",
        f"hit rate          {_number(hit, ' %')}",
        f"misses/s (MySQL)  {_number(last.misses if last else None)}"
        f"   queries/s {_number(last.db_queries if last else None)}",
        f"totals            hits {figures.hits:,.0f}  misses {figures.misses:,.0f}"
        f"  requests {figures.requests:,.0f}  MySQL errors {figures.db_errors:,.0f}",
        f"checkpoint age    {_number(figures.checkpoint_age, ' s', 2)}"
        f"   invalidation lag {_number(figures.invalidation_lag, ' s', 2)}",
        f"inspector         checks {_number(figures.inspector_checks, '', 0)}"
        f"  mismatches {_number(figures.inspector_mismatches, '', 0)}"
        f"  confirmed inconsistencies {_number(figures.inspector_inconsistencies, '', 0)}",
        f"near cache        {_number(figures.near_cache_entries, ' pages', 0)}",
        f"MySQL failover    {gtid_resume(figures.gtid_positions)}"
        f"   primary changes followed {_number(figures.primary_changes, '', 0)}",
    ]
    if figures.replicas:
        out.append(
            f"fills             replica {figures.fills.get('replica', 0):,.0f}"
            f"  primary {figures.fills.get('primary', 0):,.0f}"
        )
    out.extend(
        f"replica {name:<10}{replica_text(seen)}" for name, seen in sorted(figures.replicas.items())
    )
    for dependency, states in sorted(figures.breakers.items()):
        shown = "  ".join(f"{state} {count:.0f}" for state, count in sorted(states.items()))
        out.append(f"breaker {dependency:<9} workers: {shown}")
    out.extend(f"unreachable       {url}" for url in figures.unreachable)
    return out
