"""What one request's parts tell each other on its way through the pipeline (service.api.pipeline):
a typed record in a context variable that lives exactly as long as the request, instead of
string keys in the WSGI environ."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from service.cache.aside import RedisRead
from service.cache_outcomes import CacheOutcome

UNMATCHED = "unmatched"  # the route label of a request no route matched


@dataclass(slots=True)
class Exchange:
    """One request: set by the pipeline, completed by whoever answers it."""

    request_id: str
    route: str = UNMATCHED
    outcome: CacheOutcome | None = None  # how the cache answered, for metrics and the log line
    cache_read: RedisRead | None = None  # what the fast path read, so Flask reads Redis once
    extra: dict[str, object] | None = None  # more log fields (trace ids)


current_exchange: ContextVar[Exchange | None] = ContextVar("orders_exchange", default=None)


def current() -> Exchange:
    """This request's exchange; a detached one outside the pipeline (a bare Flask app in a
    test), so a view works either way and simply reports to nobody."""
    return current_exchange.get() or Exchange("")
