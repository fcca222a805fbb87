"""The fast path: whether a cache hit for ``GET /orders/<page>`` can be answered before Flask.

A hit from the worker's near cache costs less than Flask's own routing, request context and
Response object (~105 us per request on this 2-core machine, ``bench/results/profile-hit.md``), so
the request pipeline (``service.api.pipeline``) asks this module first, the way Django's cache
middleware answers before the view. It only decides: a ready answer (``Hit``), or "not mine" with
what it read from Redis for Flask's view to go on from (so no request reads Redis twice or counts
one Redis failure twice). Request id, port, token, ``Vary``, metrics and the log line are the
pipeline's, for this answer as for Flask's. It answers only what it can answer exactly as the view:

- the request is ``GET /orders/<digits>`` and ``parse_page`` accepts the number;
- tracing is off (with tracing on, the OpenTelemetry Flask instrumentation must make the span);
- ``PageCache.hit`` finds the page and the totals fresh and within the lag bound, in the near
  cache or else in Redis.

Anything else, and any exception on the way, is Flask's. The answer is built by
``api.orders.render``, the view's own renderer.
"""

from __future__ import annotations

from typing import NamedTuple

from service.api.orders import render
from service.cache.aside import CachedPage, PageCache, RedisRead
from service.cache_outcomes import CacheOutcome
from service.observability import tracing
from service.orders.pagination import InvalidPage, parse_page

ROUTE = "/orders/<page>"
PREFIX = "/orders/"


class Hit(NamedTuple):
    """A ready answer: everything but the pipeline's own headers (request id, ``Vary``)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    outcome: CacheOutcome


class CacheHits:
    """Answers cache hits from ``pages``; the pipeline asks ``claims`` then ``decide``."""

    def __init__(self, pages: PageCache, *, cache_control: str) -> None:
        self._pages = pages
        self._cache_control = cache_control

    @staticmethod
    def claims(method: str, path: str) -> int | None:
        """The page number if this request is one the fast path may answer, else None."""
        if method != "GET" or not path.startswith(PREFIX):
            return None
        try:
            return parse_page(path[len(PREFIX) :])
        except InvalidPage:
            return None

    def decide(self, number: int, if_none_match: str | None) -> Hit | RedisRead | None:
        """The answer to a hit; else what was read from Redis (None: nothing read)."""
        if tracing.active():
            return None
        try:
            cached = self._pages.hit(number)
            if not isinstance(cached, CachedPage):
                return cached
            rendered = render(cached, self._pages.page_size, self._cache_control, if_none_match)
        except Exception:  # noqa: BLE001 - whatever went wrong, Flask answers it properly
            return None
        headers = rendered.headers
        if rendered.status == 200:
            headers.append(("Content-Length", str(len(rendered.body))))
        return Hit(rendered.status, headers, rendered.body, cached.outcome)
