"""``orders-service inspect``: the inspector's process around ``Inspector.round``.

What the process adds to the checking: ``/metrics`` and ``/healthz`` on the bounded one-thread
server the invalidator uses (the stdlib server it had started a thread per socket and bound every
interface), on ORDERS_INSPECTOR_HOST (loopback unless told); every sample it exports labelled
``component="inspector"``, so its own MySQL and Redis reads, which reuse the API's metric families,
never count as the API's; and a summary line every minute (and at exit), so a terminal shows that
it checks something.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import REGISTRY, disable_created_metrics, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from service.inspection.inspector import Inspector
from service.observability import inspector_metrics, metrics
from service.observability.invalidator_server import BoundedHTTPServer, _answer
from service.observability.logging import get_logger

COMPONENT = "inspector"
SUMMARY_SECONDS = 60.0
_log = get_logger("service.inspection")


class Labelled(Collector):
    """Another registry's samples with ``component`` added where they have none."""

    def __init__(self, source: CollectorRegistry, component: str) -> None:
        self._source = source
        self._component = component

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            relabelled = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = sample.labels
                if "component" not in labels:
                    labels = {**labels, "component": self._component}
                relabelled.samples.append(sample._replace(labels=labels))
            yield relabelled


def labelled_exposition(component: str = COMPONENT) -> bytes:
    """This process's metrics as text, every sample labelled with ``component``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Labelled(REGISTRY, component))
    return generate_latest(registry)


def _totals() -> dict[str, float]:
    found = {}
    for name in ("checks", "mismatches", "inconsistencies"):
        found[name] = sum(
            REGISTRY.get_sample_value(f"orders_inspector_{name}_total", {"kind": kind}) or 0.0
            for kind in inspector_metrics.INSPECTOR_KINDS
        )
    return found


class Summary:
    """Counts rounds; ``due()`` says when a minute has passed; ``log()`` writes the line."""

    def __init__(self, every: float = SUMMARY_SECONDS) -> None:
        self._every = every
        self._next = time.monotonic() + every
        self.rounds = 0
        self.last_round = time.monotonic()

    def round_done(self) -> None:
        self.rounds += 1
        self.last_round = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def log(self, pending: Iterable[object]) -> None:
        self._next = time.monotonic() + self._every
        _log.info("inspector summary", rounds=self.rounds, suspects=len(list(pending)), **_totals())


def run_inspector(
    inspector: Inspector,
    *,
    close: Callable[[], None],
    host: str,
    port: int,
    interval: float,
    pages: int,
) -> None:
    """Serve /metrics and /healthz on ``host:port``, then run rounds every ``interval`` seconds
    until SIGTERM/SIGINT; healthy while rounds keep finishing. ``close`` releases the MySQL pool."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics.publish_build_info(COMPONENT)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    summary = Summary()
    stalled_after = max(10 * interval, 60.0)

    def healthy() -> bool:
        return time.monotonic() - summary.last_round < stalled_after

    server = BoundedHTTPServer(
        host,
        port,
        lambda path: _answer(healthy, path, labelled_exposition),
        name="inspector-http",
    )
    server.start()
    _log.info(
        "inspector started",
        pages=pages,
        interval=interval,
        namespace=inspector.cache.keys.base,
        listen=f"{host}:{port}",
    )
    try:
        while not stop.is_set():
            inspector.round()
            summary.round_done()
            if summary.due():
                summary.log(inspector.suspects)
            stop.wait(interval)
    finally:
        summary.log(inspector.suspects)
        server.shutdown()
        close()
