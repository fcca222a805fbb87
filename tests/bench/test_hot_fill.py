"""The pure logic of filling a hot set and seeding a table: batches, page cuts, row formats."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from bench import hot_fill, seeding
from service.orders.repository import Order
from service.orders.representation import orders_json
from service.orders.seed import generate

GIB = 2**30


def test_page_batches_cover_the_range_once_in_order() -> None:
    batches = list(hot_fill.page_batches(1001, 2250, 500))
    assert batches == [range(1001, 1501), range(1501, 2001), range(2001, 2251)]
    assert list(hot_fill.page_batches(5, 5, 500)) == [range(5, 6)]
    assert list(hot_fill.page_batches(6, 5, 500)) == []


def test_page_batches_refuse_an_empty_batch_size() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        list(hot_fill.page_batches(1, 10, 0))


def _orders(n: int) -> list[Order]:
    return [Order(*row) for row in generate(n)]  # type: ignore[arg-type]


def test_rows_are_cut_into_pages_and_a_short_last_page_ends_the_table() -> None:
    rows = _orders(25)
    cut = list(hot_fill.cut_pages(rows, range(3, 7), 10))
    assert [page for page, _ in cut] == [3, 4, 5]
    assert [len(orders) for _, orders in cut] == [10, 10, 5]
    assert cut[1][1][0] is rows[10]


def test_a_batch_client_row_parses_to_what_pymysql_gives_the_service() -> None:
    line = (
        "7\t41906\tEmeka Perlman\temeka.perlman.41906@example.com\tpending\t722.96\tEUR\t3\t"
        "2023-01-01 00:00:15.000000\t2023-01-02 03:00:15.250000\n"
    )
    order = hot_fill.parse_row(line)
    assert order == Order(
        7,
        41906,
        "Emeka Perlman",
        "emeka.perlman.41906@example.com",
        "pending",
        Decimal("722.96"),
        "EUR",
        3,
        datetime(2023, 1, 1, 0, 0, 15),
        datetime(2023, 1, 2, 3, 0, 15, 250000),
    )


def test_seed_lines_round_trip_to_the_same_json_the_service_makes() -> None:
    generated = _orders(50)
    lines = list(seeding.tsv_lines(generate(50)))
    assert all(line.count("\t") == len(seeding.COLUMNS) - 1 for line in lines)
    # the batch client prints DATETIME(6) with microseconds; the seed writes whole seconds
    parsed = [hot_fill.parse_row(line) for line in lines]
    assert orders_json(parsed) == orders_json(generated)


def test_redis_gets_what_the_pages_need_within_what_the_machine_can_spare() -> None:
    wanted = hot_fill.maxmemory_for(1_000_000, 3500, available=24 * GIB)
    assert wanted == int(1_000_000 * 3500 * 1.25) + GIB
    assert hot_fill.maxmemory_for(1_000_000, 3500, available=6 * GIB) == 3 * GIB
    assert hot_fill.maxmemory_for(1_000_000, 3500, available=hot_fill.HEADROOM) == 0
