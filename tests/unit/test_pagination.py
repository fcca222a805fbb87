"""Page numbers in URLs: what is accepted, what is refused and why, and the links between pages."""

from __future__ import annotations

import pytest

from service.cache.aside import total_pages
from service.orders.pagination import MAX_PAGE, InvalidPage, page_links, parse_page


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


def test_links_have_no_prev_on_the_first_page_and_no_next_on_the_last() -> None:
    assert page_links(1, 3) == {
        "self": "/orders/1",
        "first": "/orders/1",
        "prev": None,
        "next": "/orders/2",
        "last": "/orders/3",
    }
    assert page_links(3, 3)["next"] is None
    assert page_links(3, 3)["prev"] == "/orders/2"


def test_the_page_envelope_is_the_json_of_its_parts() -> None:
    import orjson

    from service.orders.representation import page_body

    for page, last in [(1, 1), (1, 3), (2, 3), (3, 3)]:
        body = orjson.loads(page_body(page, 10, 25, last, b'[{"id":1}]'))
        assert body == {
            "page": page,
            "per_page": 10,
            "total_orders": 25,
            "total_pages": last,
            "links": page_links(page, last),
            "orders": [{"id": 1}],
        }
