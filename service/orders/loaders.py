"""The page cache's two ways into MySQL, each one timed query through the request-path pool."""

from __future__ import annotations

from collections.abc import Callable

from service.observability import tracing
from service.orders import repository
from service.orders.database import Database
from service.orders.representation import orders_json


def page_loader(database: Database, page_size: int) -> Callable[[int], bytes]:
    def load(page: int) -> bytes:
        with tracing.span("db.page", page=page):
            orders = database.run("page", lambda cur: repository.fetch_page(cur, page, page_size))
        return orders_json(orders)

    return load


def pages_loader(database: Database, page_size: int) -> Callable[[int, int], list[bytes]]:
    """``count`` consecutive pages from ``first`` in one read, each encoded as ``page_loader``
    encodes it (the consistency inspector's tour)."""

    def load(first: int, count: int) -> list[bytes]:
        with tracing.span("db.pages", page=first, pages=count):
            pages = database.run(
                "pages", lambda cur: repository.fetch_pages(cur, first, count, page_size)
            )
        return [orders_json(orders) for orders in pages]

    return load


def total_loader(database: Database) -> Callable[[], int]:
    def load() -> int:
        with tracing.span("db.total"):
            return database.run("total", repository.count_orders)

    return load
