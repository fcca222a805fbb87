"""One request pipeline: the outer WSGI middleware every request goes through, whoever answers it.

It owns what every answer shares: the request id (bound to the log context, echoed in
``X-Request-ID``), timing, the RED histogram, the cache counter and the canonical log line
(``observability.web.record_request``), the port a route answers on (``api.ports``), the
bearer-token verdict and ``Vary: Authorization`` (``auth.web``). Then the fast path
(``api.hits``) may answer a cache hit; whatever it does not answer goes to Flask. So the two ways
of answering cannot drift: neither has a copy of any of this (tests/integration/test_pipeline.py
compares them on every route).

What a request carries from one part to the next (the route, the cache outcome, what the fast path
read from Redis, trace ids) travels in its ``Exchange``, a typed record in a context variable
that lives exactly as long as the request, never in environ keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress
from time import perf_counter
from typing import Any

import structlog
from flask import Flask, Response
from werkzeug.routing import Map
from werkzeug.wrappers import Request

from service.api import ports
from service.api.errors import not_found
from service.api.exchange import UNMATCHED, Exchange, current, current_exchange
from service.api.hits import ROUTE, CacheHits, Hit
from service.auth.tokens import Principal, TokenVerifier
from service.auth.web import PUBLIC_ENDPOINTS, refusal_response, verdict, with_vary
from service.observability import metrics
from service.observability.web import (
    REQUEST_ID_HEADER,
    record_request,
    request_id_for,
    trace_fields,
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]
PAGE_ENDPOINT = "orders.get_page"
_STATUS_LINES = {200: "200 OK", 304: "304 NOT MODIFIED"}  # as Werkzeug words them


class Pipeline:
    """Wraps Flask's ``wsgi_app``. ``hits`` None: every request goes to Flask."""

    def __init__(
        self,
        app: WSGIApp,
        url_map: Map,
        *,
        hits: CacheHits | None,
        verifier: TokenVerifier | None,
        admin_port: int,
    ) -> None:
        self.app = app  # Flask: everything the pipeline does not answer itself
        self.hits = hits
        self._urls = url_map
        self._verifier = verifier
        self._admin_port = str(admin_port) if admin_port else None
        self._guarded = self._admin_port is not None or verifier is not None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        started = perf_counter()
        # The id first: a line logged on the way (a JWKS fetch failing, a breaker opening)
        # belongs to this request.
        request_id = request_id_for(environ.get("HTTP_X_REQUEST_ID"))
        structlog.contextvars.bind_contextvars(request_id=request_id)
        method = environ.get("REQUEST_METHOD", "GET").upper()
        raw_path = environ.get("PATH_INFO", "")
        hits = self.hits
        number = hits.claims(method, raw_path) if hits is not None else None
        if number is None:
            route, endpoint = self._route(environ)
        else:  # a fast-path candidate, GET /orders/<digits>: its route is known without routing
            route, endpoint = ROUTE, PAGE_ENDPOINT
        vary = self._verifier is not None and endpoint not in PUBLIC_ENDPOINTS
        refusal = self._refusal(environ, route, endpoint, raw_path) if self._guarded else None
        exchange = Exchange(request_id, route)
        if refusal is None and number is not None and hits is not None:
            decided = hits.decide(number, environ.get("HTTP_IF_NONE_MATCH"))
            if isinstance(decided, Hit):
                exchange.outcome = decided.outcome
                headers = self._finish(decided.headers, vary, request_id)
                self._record(exchange, method, decided.status, started, raw_path)
                start_response(_STATUS_LINES[decided.status], headers)
                return (decided.body,)
            exchange.cache_read = decided
        # Flask's side may bind more log context: it starts from this request's id alone.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        token = current_exchange.set(exchange)  # only Flask's side reads it
        try:
            body = self._handover(refusal or self.app, environ, start_response, exchange, vary)
        finally:
            current_exchange.reset(token)
        self._record(exchange, method, body[1], started, _path(raw_path, environ))
        return body[0]

    def _handover(
        self,
        app: WSGIApp,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        exchange: Exchange,
        vary: bool,
    ) -> tuple[Iterable[bytes], int]:
        """``app``'s answer (Flask's or a refusal's) with the pipeline's headers; its status."""
        statuses: list[str] = []

        def finishing(status: str, headers: Headers, exc_info: Any = None) -> Any:
            statuses.append(status)
            return start_response(
                status, self._finish(headers, vary, exchange.request_id), exc_info
            )

        body = app(environ, finishing)
        return body, int(statuses[0][:3]) if statuses else 500

    def _route(self, environ: dict[str, Any]) -> tuple[str, str | None]:
        """The route template and endpoint Flask will match (the same map, the same environ);
        no endpoint when nothing matches (Flask answers 404 or 405)."""
        try:
            rule, _ = self._urls.bind_to_environ(environ).match(return_rule=True)
        except Exception:  # noqa: BLE001 - a routing exception: Flask answers it
            return UNMATCHED, None
        endpoint: str = rule.endpoint
        return rule.rule, endpoint

    def _refusal(
        self, environ: dict[str, Any], route: str, endpoint: str | None, raw_path: str
    ) -> Response | None:
        """The 404 of a route asked on the other port, else the auth refusal, else None."""
        if endpoint is not None and not ports.on_its_port(
            route, environ.get("SERVER_PORT"), self._admin_port
        ):
            return not_found(_path(raw_path, environ))
        if self._verifier is None or endpoint in PUBLIC_ENDPOINTS:
            return None
        found = verdict(self._verifier, environ.get("HTTP_AUTHORIZATION"))
        if isinstance(found, Principal):
            return None
        return refusal_response(found, _path(raw_path, environ))

    @staticmethod
    def _finish(headers: Headers, vary: bool, request_id: str) -> Headers:
        if vary:
            with_vary(headers)
        headers.append((REQUEST_ID_HEADER, request_id))
        return headers

    @staticmethod
    def _record(exchange: Exchange, method: str, status: int, started: float, path: str) -> None:
        # The answer is decided: a failure to record it (a log write that cannot complete) must
        # not turn it into an error.
        with suppress(Exception):
            record_request(
                exchange.route,
                method if method in metrics.KNOWN_METHODS else "other",
                status,
                perf_counter() - started,
                exchange.outcome,
                path,
                exchange.request_id,
                exchange.extra,
            )


def _path(raw: str, environ: dict[str, Any]) -> str:
    """The request's path as Flask's ``request.path`` spells it."""
    if raw.isascii():
        return "/" + raw.lstrip("/")
    return Request(environ, shallow=True).path


def _note_trace(response: Response) -> Response:
    """Inside Flask, while its span is current: trace ids for the log line, outcome on the span."""
    exchange = current()
    exchange.extra = trace_fields(exchange.outcome)
    return response


def install(
    app: Flask, *, hits: CacheHits | None, verifier: TokenVerifier | None, admin_port: int
) -> Pipeline:
    """Put the pipeline in front of ``app`` (outermost: after any other ``wsgi_app`` wrapper)."""
    app.after_request(_note_trace)
    pipeline = Pipeline(
        app.wsgi_app, app.url_map, hits=hits, verifier=verifier, admin_port=admin_port
    )
    app.wsgi_app = pipeline  # type: ignore[method-assign]
    return pipeline
