"""``GET /orders/<page>``: validate the number, ask the page cache, shape the response.

``render`` is the one place a served page becomes status, headers and body: the Flask view below
and the fast path (``service.api.hits``) both answer through it.
"""

from __future__ import annotations

from typing import NamedTuple

from flask import Blueprint, Response, request

from service.api.exchange import current
from service.cache.aside import CachedPage
from service.cache_outcomes import X_CACHE, CacheOutcome
from service.orders.pagination import InvalidPage, parse_page, total_pages
from service.orders.representation import MEDIA_TYPE, page_body
from service.wiring import api_services

bp = Blueprint("orders", __name__)


class RenderedPage(NamedTuple):
    """A page answer before it meets a framework: ``headers`` hold everything but the length."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def render(
    cached: CachedPage, page_size: int, cache_control: str, if_none_match: str | None
) -> RenderedPage:
    """A 200 with the page, or a 304 when ``if_none_match`` names its current ETag."""
    headers = [
        ("ETag", f'W/"{cached.entry.etag}-{cached.total_orders}"'),
        ("X-Cache", X_CACHE[cached.outcome]),
        ("Cache-Control", cache_control),
    ]
    if cached.outcome is CacheOutcome.STALE:
        headers.append(("X-Cache-Lag", f"{cached.lag:.1f}"))
    if if_none_match and _matches(if_none_match, cached.entry.etag, cached.total_orders):
        return RenderedPage(304, headers, b"")
    headers.append(("Content-Type", MEDIA_TYPE))
    return RenderedPage(200, headers, _body(cached, page_size))


@bp.get("/orders/<page>")
def get_page(page: str) -> Response:
    number = parse_page(page)
    found = api_services()
    pages = found.pages
    exchange = current()
    cached = pages.get(number, exchange.cache_read)
    exchange.outcome = cached.outcome
    rendered = render(
        cached, pages.page_size, found.cache_control, request.headers.get("If-None-Match")
    )
    return Response(rendered.body, status=rendered.status, headers=rendered.headers)


@bp.get("/orders/")
@bp.get("/orders")
def missing_page() -> Response:
    raise InvalidPage("The page number is missing: use /orders/1 for the first page.")


def _body(cached: CachedPage, page_size: int) -> bytes:
    last = total_pages(cached.total_orders, page_size)
    return page_body(cached.number, page_size, cached.total_orders, last, cached.entry.orders_json)


def _matches(if_none_match: str, page_etag: str, total_orders: int) -> bool:
    """Weak comparison (RFC 9110 13.1.2): any listed tag, weak or strong, or ``*``."""
    if if_none_match.strip() == "*":
        return True
    wanted = f'"{page_etag}-{total_orders}"'
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
