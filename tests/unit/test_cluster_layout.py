"""The grouped key layout of a Redis Cluster (service/cache/layout.py) and where a cluster's
invalidator resumes (service/cache/cluster.py's ``oldest``): pure logic, no server."""

from __future__ import annotations

import pytest

from service.cache.cluster import oldest
from service.cache.keys import LIBRARY, CacheKeys, with_step


def test_without_groups_every_name_is_todays() -> None:
    keys = CacheKeys("orders", 50)
    assert [
        keys.page(3),
        keys.lease(3),
        keys.totals,
        keys.totals_lease,
        keys.index,
        keys.binlog_position,
        keys.checkpoint,
        keys.config,
        keys.invalidator_lease,
        keys.invalidator_fence,
        keys.hot,
        keys.inspector_found,
        keys.channel,
        keys.pattern,
    ] == [
        "orders:s50:page:3",
        "orders:s50:lease:3",
        "orders:s50:totals",
        "orders:s50:lease:totals",
        "orders:s50:index",
        "orders:s50:binlog",
        "orders:s50:checkpoint",
        "orders:s50:config",
        "orders:s50:invalidator:lease",
        "orders:s50:invalidator:fence",
        "orders:s50:hot",
        "orders:s50:inspector:found",
        "orders:s50:invalidations",
        "orders:s50:*",
    ]


@pytest.mark.parametrize(("page", "group"), [(1, 0), (32, 0), (33, 1), (64, 1), (65, 2)])
def test_a_page_belongs_to_the_group_of_its_hash_tag(page: int, group: int) -> None:
    keys = CacheKeys("orders", 50, 32)
    assert keys.group_of(page) == group
    assert page in keys.pages_of(group)
    tag = f"{{orders:s50:g{group}}}:"
    assert keys.page(page) == f"{tag}page:{page}"
    assert keys.lease(page) == f"{tag}lease:{page}"
    assert keys.of_page(page).totals == f"{tag}totals"


def test_the_singletons_share_the_control_tag() -> None:
    keys = CacheKeys("orders", 50, 32)
    assert {
        name.partition("}")[0]
        for name in (keys.config, keys.hot, keys.invalidator_lease, keys.groups)
    } == {"{orders:s50"}


def test_the_grouped_scripts_are_in_the_library() -> None:
    assert LIBRARY.function("invalidate_group") in LIBRARY.source
    assert LIBRARY.function("take_fence") in LIBRARY.source


def test_the_invalidator_resumes_from_the_oldest_group_position() -> None:
    positions = [
        with_step("bin.000002:90|server=s|gtid=", 7),
        with_step("bin.000001:900|server=s|gtid=", 5),
        "bin.000002:10|server=s|gtid=",
    ]
    assert oldest(positions) == positions[1]


@pytest.mark.parametrize(
    "positions",
    [
        [],
        ["bin.000001:9|server=s|gtid=", None],
        ["bin.000001:9|server=s|gtid=", "bin.000001:4|server=t|gtid="],
        ["bin.000001:9|server=s|gtid=", "garbage"],
    ],
)
def test_no_resume_position_when_a_group_has_none_or_another_stream(
    positions: list[str | None],
) -> None:
    assert oldest(positions) is None
