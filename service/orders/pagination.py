"""Page numbers: what a valid one is, and the links between pages."""

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
        shown = raw if len(raw) <= 40 and raw.isprintable() else repr(raw[:40])
        raise InvalidPage(f"The page must be a positive whole number, not {shown!r}.")
    if len(raw) > 13 or int(raw) > MAX_PAGE:
        raise InvalidPage(f"The page must be at most {MAX_PAGE}.")
    number = int(raw)
    if number < 1:
        raise InvalidPage("Pages are numbered from 1.")
    return number
