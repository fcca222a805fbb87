"""The page cache's two ways into MySQL, each one timed query through the request-path pool.

A miss's reads go through ``ReplicaReads`` with the GTID state its lease handed out (a replica
that has applied it, else the primary); the inspector's go to the primary (``Database``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from service.observability import tracing
from service.orders import repository
from service.orders.database import Database
from service.orders.replicas import ReplicaReads
from service.orders.representation import orders_json

T = TypeVar("T")


class PageLoad(Protocol):
    def __call__(self, page: int, state: str = "") -> bytes: ...


class TotalLoad(Protocol):
    def __call__(self, state: str = "") -> int: ...


def _runner(source: Database | ReplicaReads) -> Callable[[str, Callable[[Any], T], str], T]:
    """``run(query_name, work, state)`` on the replicas' router, or on one database (which
    ignores ``state``)."""
    if isinstance(source, ReplicaReads):
        return source.run
    return lambda name, work, _state: source.run(name, work)


def page_loader(source: Database | ReplicaReads, page_size: int) -> PageLoad:
    run = _runner(source)

    def load(page: int, state: str = "") -> bytes:
        with tracing.span("db.page", page=page):
            orders = run("page", lambda cur: repository.fetch_page(cur, page, page_size), state)
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


def total_loader(source: Database | ReplicaReads) -> TotalLoad:
    run = _runner(source)

    def load(state: str = "") -> int:
        with tracing.span("db.total"):
            return run("total", repository.count_orders, state)

    return load
