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


def total_loader(database: Database) -> Callable[[], int]:
    def load() -> int:
        with tracing.span("db.total"):
            return database.run("total", repository.count_orders)

    return load
