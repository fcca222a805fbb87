"""The Sentinel topology with least privilege: the users `orders-service grants --topology
sentinel` prints, on real Redis servers and Sentinels, are enough for the cache and nothing
more (the Sentinels' user discovers the primary, and can fail nothing over)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from service.cache import topology
from service.cache.keys import CacheKeys, Invalidation
from service.cache.store import load_functions
from service.config import Settings
from service.orders import roles
from service.wiring import build_redis_cache
from tests.support.redis_sentinel import MASTER, SentinelGroup

pytestmark = [pytest.mark.faults]

PREFIX = "sentinelacl"


@pytest.fixture(scope="module")
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup.create() as created:
        for server in (created.primary, created.replica):  # ACLs are not replicated
            created.client(server).execute_command(
                "ACL", "SETUSER", "inv", *roles.redis_acl("invalidator", "inv", PREFIX), ">data-pw"
            )
        for sentinel in created.sentinels:
            sentinel.client().execute_command(
                "ACL", "SETUSER", "inv", *roles.sentinel_acl("inv"), f">{SENTINEL_PASSWORD}"
            )
        load_functions(created.client(created.primary))
        yield created


SENTINEL_PASSWORD = "sentinel-pw"


def settings_for(group: SentinelGroup, sentinel_password: str = SENTINEL_PASSWORD) -> Settings:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in group.sentinels)
    return Settings.from_env(
        {
            "ORDERS_REDIS_URL": f"redis+sentinel://inv:data-pw@{hosts}/{MASTER}",
            "ORDERS_REDIS_SENTINEL_PASSWORD": sentinel_password,
            "ORDERS_CACHE_PREFIX": PREFIX,
        }
    )


def test_the_invalidators_users_are_enough_through_the_sentinels(group: SentinelGroup) -> None:
    settings = settings_for(group)
    cache = build_redis_cache(settings, timeout=2)
    keys = CacheKeys(PREFIX, settings.page_size)
    assert cache.apply_step(Invalidation(pages=frozenset({1}), position="f:4|step=1")) >= 0
    assert cache.stored_position() == "f:4"
    assert cache.primary_identity() == topology.primary_identity(group.client(group.primary))
    assert group.client(group.replica).get(keys.binlog_position) in (None, b"f:4|step=1")
    cache.client.close()


def test_the_sentinels_user_discovers_and_can_fail_nothing_over(group: SentinelGroup) -> None:
    settings = settings_for(group)
    sentinels = topology.sentinels(settings.redis_url, 2)
    assert sentinels.discover_master(MASTER) == ("127.0.0.1", group.link.port)
    with pytest.raises(redis.exceptions.NoPermissionError):
        sentinels.sentinels[0].execute_command("SENTINEL", "FAILOVER", MASTER)


def test_a_wrong_sentinel_password_is_a_clear_failure(group: SentinelGroup) -> None:
    cache = build_redis_cache(settings_for(group, "not-it"), timeout=1)
    with pytest.raises(Exception, match="No master found") as failed:
        cache.client.ping()
    assert "not-it" not in str(failed.value)
