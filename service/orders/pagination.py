"""Page numbers: what a valid one is, and all page arithmetic (ranks, page of a row, last page).

A row's *rank* is how many orders have a smaller id; page ``n`` holds ranks
``(n - 1) * page_size`` up to ``n * page_size - 1``. Everything that maps rows to pages uses these
three functions, so the cache, the invalidation planner and the SQL cannot disagree."""

from __future__ import annotations

MAX_PAGE = 10**12  # far beyond any table, small enough that (page - 1) * size fits a BIGINT


class InvalidPage(ValueError):
    """The path segment is not a page number; ``detail`` says why, for the problem response."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def parse_page(raw: str) -> int:
    """A page number from the URL: a positive integer in plain decimal digits."""
    if raw == "":
        raise InvalidPage("The page number is missing: use /orders/1 for the first page.")
    if not (raw.isascii() and raw.isdigit()):
        # repr once: it quotes the text and escapes what cannot be printed (a NUL, a newline).
        raise InvalidPage(f"The page must be a positive whole number, not {raw[:40]!r}.")
    if len(raw) > 13 or int(raw) > MAX_PAGE:
        raise InvalidPage(f"The page must be at most {MAX_PAGE}.")
    number = int(raw)
    if number < 1:
        raise InvalidPage("Pages are numbered from 1.")
    return number


def first_rank(page: int, page_size: int) -> int:
    """Rank of the first order on ``page``."""
    return (page - 1) * page_size


def page_of_rank(rank: int, page_size: int) -> int:
    """The page an order with ``rank`` smaller ids is on."""
    return rank // page_size + 1


def total_pages(total_orders: int, page_size: int) -> int:
    """Pages needed for ``total_orders``; page 1 always exists, even with no orders."""
    return max(1, -(-total_orders // page_size))
