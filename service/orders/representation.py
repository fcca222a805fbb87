"""How orders look on the wire: JSON made once per fill, and the page envelope around it.

The orders of a page are encoded once, when the page is loaded from MySQL, and cached as bytes.
The envelope (page number, totals, links) is formatted around those bytes on every request, so a
cache hit never decodes or re-encodes JSON and a new order's totals do not evict cached pages.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from service.orders.repository import Order

MEDIA_TYPE = "application/json"


def cache_control(max_age: int, max_stale: int) -> str:
    """Clients may reuse a page for ``max_age`` seconds, then revalidate with If-None-Match; if
    the service fails they may keep using it as long as the service itself would.

    Always ``private``: with authentication on a page is one caller's answer, and with it off
    the service cannot know that a proxy in front is not authenticating users (the README's
    oauth2-proxy example), so no shared cache may hand a page to another caller
    (RFC 9111 5.2.2.7). service.auth adds ``Vary: Authorization`` when it is on."""
    return (
        f"private, max-age={max_age}, stale-while-revalidate={max_age}, stale-if-error={max_stale}"
    )


def _timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with a Z; MySQL DATETIMEs are stored in UTC by this service."""
    return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def order_document(order: Order) -> dict[str, object]:
    return {
        "id": order.id,
        "customer": {
            "id": order.customer_id,
            "name": order.customer_name,
            "email": order.customer_email,
        },
        "status": order.status,
        "total": {"amount": str(order.amount), "currency": order.currency},
        "item_count": order.item_count,
        "created_at": _timestamp(order.created_at),
        "updated_at": _timestamp(order.updated_at),
    }


def orders_json(orders: list[Order]) -> bytes:
    """The JSON array of a page's orders; money as decimal strings, never floats."""
    return orjson.dumps([order_document(order) for order in orders])


def page_body(page: int, page_size: int, total_orders: int, last: int, orders: bytes) -> bytes:
    """The response body: the envelope formatted around the cached orders array. Links are
    relative; ``prev``/``next`` are null at the ends. Formatted as bytes, so a hit builds no dict
    and runs no encoder."""
    prev_link = b'"/orders/%d"' % (page - 1) if page > 1 else b"null"
    next_link = b'"/orders/%d"' % (page + 1) if page < last else b"null"
    return _ENVELOPE % (
        page,
        page_size,
        total_orders,
        last,
        page,
        prev_link,
        next_link,
        last,
        orders,
    )


_ENVELOPE = (
    b'{"page":%d,"per_page":%d,"total_orders":%d,"total_pages":%d,'
    b'"links":{"self":"/orders/%d","first":"/orders/1","prev":%s,"next":%s,"last":"/orders/%d"},'
    b'"orders":%s}'
)
