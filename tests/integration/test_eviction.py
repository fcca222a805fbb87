"""Eviction (issue 18 case 6): the index and the control keys survive Redis' ``maxmemory-policy``,
or the service refuses to start and ``/readyz`` says so.

Throwaway ``redis-server`` processes squeezed to a few MB, under the policy each test names; the
shared Redis on 6379 is never reconfigured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask

from service import close_app, create_app
from service.cache.eviction import policy_problem
from service.cache.keys import CacheKeys
from service.config import Settings
from service.wiring import build_redis_cache
from tests.support.fixtures import ThrowawayServers
from tests.support.servers import RedisServer, free_port
from tests.support.shared import SHARED_MYSQL, drop_database, make_database

ORDERS = 600  # 60 pages: with big orders padding, enough to fill a few MB
_CLI = Path(sys.executable).parent / "orders-service"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    url = make_database(SHARED_MYSQL, ORDERS)
    yield url
    drop_database(url)


def squeezed(throwaway: ThrowawayServers, policy: str, megabytes: int = 3) -> RedisServer:
    return throwaway.redis(
        extra_args=["--maxmemory", f"{megabytes}mb", "--maxmemory-policy", policy]
    )


def settings_for(database_url: str, server: RedisServer, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "ORDERS_DATABASE_URL": database_url,
            "ORDERS_REDIS_URL": server.url,
            "ORDERS_CACHE_PREFIX": "evict",
            "ORDERS_LOG_FORMAT": "json",
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("policy", "safe"),
    [
        ("noeviction", True),
        ("volatile-lru", True),
        ("volatile-lfu", True),
        ("volatile-random", True),
        ("volatile-ttl", True),
        ("allkeys-lru", False),
        ("allkeys-lfu", False),
        ("allkeys-random", False),
    ],
)
def test_only_policies_that_spare_keys_without_a_ttl_are_accepted(policy: str, safe: bool) -> None:
    assert (policy_problem(policy) is None) is safe


@pytest.mark.parametrize("command", ["serve", "invalidate"])
def test_the_service_refuses_to_start_on_a_redis_that_may_evict_its_control_keys(
    command: str, throwaway: ThrowawayServers, database_url: str
) -> None:
    server = squeezed(throwaway, "allkeys-lru")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORDERS_")},
        "ORDERS_DATABASE_URL": database_url,
        "ORDERS_REDIS_URL": server.url,
        "ORDERS_PORT": str(free_port()),
        "ORDERS_INVALIDATOR_METRICS_PORT": str(free_port()),
        "ORDERS_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [str(_CLI), command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "allkeys-lru" in done.stdout + done.stderr


def test_readyz_reports_a_policy_changed_to_one_that_evicts(
    throwaway: ThrowawayServers, database_url: str
) -> None:
    server = squeezed(throwaway, "volatile-lru")
    app = create_app(settings_for(database_url, server))
    try:
        body = app.test_client().get("/readyz").get_json()
        assert body["redis_eviction"] == "ok: volatile-lru"
        redis.Redis(port=server.port).config_set("maxmemory-policy", "allkeys-lru")
        body = app.test_client().get("/readyz").get_json()
        assert body["redis_eviction"].startswith("unsafe: allkeys-lru")
        assert any("allkeys-lru" in reason for reason in body["degraded"])
    finally:
        close_app(app)


def test_without_config_permission_the_policy_is_read_from_info(
    throwaway: ThrowawayServers, database_url: str
) -> None:
    """Managed Redis (and the roles of service/orders/roles.py) deny CONFIG: INFO memory says."""
    server = squeezed(throwaway, "allkeys-lfu")
    admin = redis.Redis(port=server.port)
    admin.acl_setuser(
        "app", enabled=True, passwords=["+secret-pw"], keys=["*"], commands=["+@all", "-config"]
    )
    settings = settings_for(
        database_url, server, ORDERS_REDIS_URL=f"redis://app:secret-pw@127.0.0.1:{server.port}/0"
    )
    cache = build_redis_cache(settings)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            cache.client.config_get("maxmemory-policy")
        assert cache.maxmemory_policy() == "allkeys-lfu"
    finally:
        cache.client.close()


def test_under_volatile_lru_squeezed_to_3mb_the_index_and_control_keys_survive(
    throwaway: ThrowawayServers, database_url: str
) -> None:
    server = squeezed(throwaway, "volatile-lru")
    app: Flask = create_app(settings_for(database_url, server, ORDERS_PAGE_SIZE="10"))
    keys = CacheKeys("evict", 10)
    admin = redis.Redis(port=server.port)
    admin.set(keys.checkpoint, 1)
    admin.set(keys.binlog_position, "mysql-bin.000001:4")
    admin.set(keys.invalidator_fence, 3)
    try:
        client = app.test_client()
        for page in range(1, 61):
            assert client.get(f"/orders/{page}").status_code == 200
        # Padding with TTLs (as entries carry) until Redis must evict.
        filler = b"x" * 50_000
        for n in range(200):
            admin.set(f"evict:filler:{n}", filler, ex=3600)
        assert int(admin.info("stats")["evicted_keys"]) > 0
        assert admin.zcard(keys.index) >= 60
        for key in (keys.checkpoint, keys.binlog_position, keys.invalidator_fence, keys.config):
            assert admin.exists(key), key
    finally:
        close_app(app)
