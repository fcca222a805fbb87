"""Page numbers in URLs: what is accepted, what is refused and why, and the links between pages."""

from __future__ import annotations

import orjson
import pytest

from service.orders.pagination import MAX_PAGE, InvalidPage, parse_page, total_pages
from service.orders.representation import page_body


@pytest.mark.parametrize(
    ("raw", "number"), [("1", 1), ("99", 99), ("007", 7), (str(MAX_PAGE), MAX_PAGE)]
)
def test_positive_whole_numbers_are_pages(raw: str, number: int) -> None:
    assert parse_page(raw) == number


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "missing"),
        ("0", "numbered from 1"),
        ("-1", "positive whole number"),
        ("abc", "positive whole number"),
        ("1.5", "positive whole number"),
        ("1e3", "positive whole number"),
        (" 1", "positive whole number"),
        ("\u0661", "positive whole number"),  # Arabic-Indic digit one: isdigit() but not ASCII
        ("\x00", "positive whole number"),
        ("10" + "0" * 29, "at most"),
        (str(MAX_PAGE + 1), "at most"),
    ],
)
def test_anything_else_is_refused_with_a_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPage, match=reason):
        parse_page(raw)


@pytest.mark.parametrize(
    ("total", "size", "pages"), [(0, 10, 1), (1, 10, 1), (10, 10, 1), (11, 10, 2), (1000, 10, 100)]
)
def test_total_pages_rounds_up_and_page_one_always_exists(
    total: int, size: int, pages: int
) -> None:
    assert total_pages(total, size) == pages


def envelope(page: int, last: int) -> dict[str, object]:
    return orjson.loads(page_body(page, 10, 25, last, b'[{"id":1}]'))  # type: ignore[no-any-return]


def test_links_have_no_prev_on_the_first_page_and_no_next_on_the_last() -> None:
    assert envelope(1, 3)["links"] == {
        "self": "/orders/1",
        "first": "/orders/1",
        "prev": None,
        "next": "/orders/2",
        "last": "/orders/3",
    }
    assert envelope(2, 3)["links"] == {
        "self": "/orders/2",
        "first": "/orders/1",
        "prev": "/orders/1",
        "next": "/orders/3",
        "last": "/orders/3",
    }
    assert envelope(3, 3)["links"]["next"] is None  # type: ignore[index]
    assert envelope(3, 3)["links"]["prev"] == "/orders/2"  # type: ignore[index]
    assert envelope(1, 1)["links"]["prev"] is None  # type: ignore[index]
    assert envelope(1, 1)["links"]["next"] is None  # type: ignore[index]


def test_the_page_envelope_carries_the_totals_and_the_cached_orders_untouched() -> None:
    body = envelope(2, 3)
    assert {k: v for k, v in body.items() if k != "links"} == {
        "page": 2,
        "per_page": 10,
        "total_orders": 25,
        "total_pages": 3,
        "orders": [{"id": 1}],
    }
