"""``GET /orders/<page>``: validate the number, ask the page cache, shape the response."""

from __future__ import annotations

from flask import Blueprint, Response, request

from service.cache.aside import CachedPage
from service.cache.outcomes import X_CACHE
from service.observability.web import note_cache_outcome
from service.orders.pagination import InvalidPage, parse_page, total_pages
from service.orders.representation import MEDIA_TYPE, page_body
from service.services import services

bp = Blueprint("orders", __name__)


@bp.get("/orders/<page>")
def get_page(page: str) -> Response:
    number = parse_page(page)
    found = services()
    pages = found.pages
    cached = pages.get(number)
    note_cache_outcome(cached.outcome)
    headers = {
        "ETag": f'W/"{cached.entry.etag}-{cached.total_orders}"',
        "X-Cache": X_CACHE[cached.outcome],
        "Cache-Control": found.cache_control,
    }
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and _matches(if_none_match, cached.entry.etag, cached.total_orders):
        return Response(status=304, headers=headers)
    return Response(_body(cached, pages.page_size), headers=headers, mimetype=MEDIA_TYPE)


@bp.get("/orders/")
@bp.get("/orders")
def missing_page() -> Response:
    raise InvalidPage("The page number is missing: use /orders/1 for the first page.")


def _body(cached: CachedPage, page_size: int) -> bytes:
    last = total_pages(cached.total_orders, page_size)
    return page_body(cached.number, page_size, cached.total_orders, last, cached.entry.orders_json)


def cache_control(max_age: int, max_stale: int) -> str:
    """Clients may reuse a page for ``max_age`` seconds, then revalidate with If-None-Match; if
    the service fails they may keep using it as long as the service itself would."""
    return (
        f"public, max-age={max_age}, stale-while-revalidate={max_age}, stale-if-error={max_stale}"
    )


def _matches(if_none_match: str, page_etag: str, total_orders: int) -> bool:
    """Weak comparison (RFC 9110 13.1.2): any listed tag, weak or strong, or ``*``."""
    if if_none_match.strip() == "*":
        return True
    wanted = f'"{page_etag}-{total_orders}"'
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))
