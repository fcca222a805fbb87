"""What the inspector samples and what it may spend (service/inspection/sampling.py)."""

from __future__ import annotations

import random

from service.cache.hot import LIMIT, HotPages
from service.inspection.sampling import QueryBudget, Tour, candidates


def test_a_tour_visits_every_page_number_once_including_ones_no_index_lists() -> None:
    tour = Tour(random.Random(3))
    seen = [page for _ in range(7) for page in tour.next(20, 3)][:20]
    assert sorted(seen) == list(range(1, 21))


def test_hot_pages_and_the_tours_blocks_take_turns_and_no_single_page_comes_twice() -> None:
    spans = candidates([5, 6, 7], [(11, 10), (1, 10)], [9, 5])
    assert spans == [(5, 1), (11, 10), (6, 1), (1, 10), (7, 1), (9, 1)]


def test_the_budget_allows_rate_queries_a_second_and_saves_up_no_more_than_a_burst() -> None:
    now = [0.0]
    budget = QueryBudget(4.0, 1.4, lambda: now[0])
    spent = 0
    for _ in range(100):  # 10 s in rounds of 0.1 s
        now[0] += 0.1
        budget.refill()
        while budget.take():
            spent += 1
    assert 40 <= spent <= 42
    now[0] += 60
    budget.refill()
    assert budget.take()
    assert not budget.take()  # 1.4 saved up at most


def test_hot_pages_are_counted_within_a_bound_and_the_most_read_come_first() -> None:
    hot = HotPages()
    for page, times in ((3, 5), (8, 2), (1, 9)):
        for _ in range(times):
            hot.saw(page)
    assert list(hot.take(2)) == [1, 3]
    assert hot.take() == {}
    for page in range(LIMIT + 10):
        hot.saw(page)
    assert len(hot.take(LIMIT + 10)) == LIMIT
