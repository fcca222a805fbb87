"""Cache hits answered in front of Flask: WSGI middleware for ``GET /orders/<page>``.

A hit from the worker's near cache costs less than Flask's own routing, request context and
Response object (~105 us per request on this 2-core machine, ``bench/results/profile-hit.md``), so
this middleware answers hits before Flask sees the request, the way Django's cache middleware
answers before the view. It answers only what it can answer exactly as Flask would:

- the request is ``GET /orders/<digits>`` on the API port, and ``parse_page`` accepts the number;
- tracing is off (with tracing on, the OpenTelemetry Flask instrumentation must make the span);
- authentication is off, or the bearer token verifies with the required scope (the verdict
  travels on with a request handed to Flask, so no token is verified twice);
- ``PageCache.hit`` finds the page and the totals fresh and within the lag bound, in the near
  cache or else in Redis.

Anything else, and any exception on the way, goes to Flask, which answers it as before (a
refusal, a miss, an error), going on from what was already read from Redis (``CACHE_READ_KEY``),
so no request reads Redis twice or counts one Redis failure twice. A fast answer is built by
``api.orders.render``, the view's own renderer, and leaves what every request leaves: the RED
histogram, the cache counter, the canonical log line and the request id
(``observability.web.record_request``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress
from time import perf_counter
from typing import Any

import structlog

from service.api.orders import CACHE_READ_KEY, render
from service.auth.tokens import Principal, TokenVerifier
from service.auth.web import VERDICT_KEY, verdict
from service.cache.aside import CachedPage, PageCache
from service.cache_outcomes import CacheOutcome
from service.observability import tracing
from service.observability.web import (
    REQUEST_ID_HEADER,
    REQUEST_ID_KEY,
    record_request,
    request_id_for,
)
from service.orders.pagination import InvalidPage, parse_page

ROUTE = "/orders/<page>"
PREFIX = "/orders/"
_STATUS_LINES = {200: "200 OK", 304: "304 NOT MODIFIED"}  # as Werkzeug words them
HIT = CacheOutcome.HIT

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class CacheHits:
    """Wraps Flask's ``wsgi_app``; answers cache hits, hands everything else on."""

    def __init__(
        self,
        app: WSGIApp,
        pages: PageCache,
        *,
        cache_control: str,
        verifier: TokenVerifier | None,
        admin_port: int,
    ) -> None:
        self.app = app  # Flask's wsgi_app: everything the fast path does not answer
        self._pages = pages
        self._cache_control = cache_control
        self._verifier = verifier
        self._admin_port = str(admin_port) if admin_port else None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = perf_counter()
        path = environ.get("PATH_INFO", "")
        if (
            path.startswith(PREFIX)
            and environ.get("REQUEST_METHOD") == "GET"
            and environ.get("SERVER_PORT") != self._admin_port
        ):
            # The id first: a line logged on the way (a JWKS fetch failing, a breaker opening)
            # belongs to this request, and Flask keeps the same id if it gets the request.
            request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
            environ[REQUEST_ID_KEY] = request_id
            structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                answer = self._answer(environ, path, request_id)
            except Exception:  # noqa: BLE001 - whatever went wrong, Flask answers it properly
                answer = None
            if answer is not None:
                status, headers, body = answer
                # The answer is decided: a failure to record it (a log write that cannot
                # complete) must not make Flask answer, read Redis and count it a second time.
                with suppress(Exception):
                    record_request(
                        ROUTE, "GET", status, perf_counter() - started, HIT, path, request_id
                    )
                start_response(_STATUS_LINES[status], headers)
                return (body,)
        return self.app(environ, start_response)

    def _answer(
        self, environ: dict[str, Any], path: str, request_id: str
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        if tracing.active():
            return None
        try:
            number = parse_page(path[len(PREFIX) :])
        except InvalidPage:
            return None
        verifier = self._verifier
        if verifier is not None:
            found = verdict(verifier, environ.get("HTTP_AUTHORIZATION"))
            environ[VERDICT_KEY] = found  # if Flask gets the request, it does not ask again
            if not isinstance(found, Principal):
                return None
        cached = self._pages.hit(number)
        if not isinstance(cached, CachedPage):
            environ[CACHE_READ_KEY] = cached
            return None
        rendered = render(
            cached, self._pages.page_size, self._cache_control, environ.get("HTTP_IF_NONE_MATCH")
        )
        headers = rendered.headers
        if rendered.status == 200:
            headers.append(("Content-Length", str(len(rendered.body))))
        if verifier is not None:
            headers.append(("Vary", "Authorization"))
        headers.append((REQUEST_ID_HEADER, request_id))
        return rendered.status, headers, rendered.body
