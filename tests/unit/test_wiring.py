"""The composition root hands each process's constructors the settings they use: every
ORDERS_INVALIDATOR_* and ORDERS_INSPECTOR_* value reaches the object built from it. Nothing is
started or connected here (the pools and clients connect on first use)."""

from __future__ import annotations

import dataclasses

from service import wiring
from service.config import Settings
from service.invalidation.options import InvalidatorOptions

ENV = {
    "ORDERS_PAGE_SIZE": "7",
    "ORDERS_CACHE_TTL": "77",
    "ORDERS_CACHE_PREFIX": "wiring-test",
    "ORDERS_DATABASE_WAIT_TIMEOUT": "17",
    "ORDERS_INVALIDATOR_SERVER_ID": "4711",
    "ORDERS_INVALIDATOR_HEARTBEAT": "0.7",
    "ORDERS_INVALIDATOR_RECHECK_DELAY": "0.3",
    "ORDERS_INVALIDATOR_STALL_AFTER": "11",
    "ORDERS_INVALIDATOR_CHUNK_ROWS": "123",
    "ORDERS_INVALIDATOR_LEASE_TTL": "4",
    "ORDERS_INVALIDATOR_VERIFY_BLOCKS": "6",
    "ORDERS_INVALIDATOR_VERIFY_INTERVAL": "2",
    "ORDERS_INVALIDATOR_REPAIR_SETTLE": "1.5",
    "ORDERS_INSPECTOR_PAGES": "9",
}


def test_the_invalidator_gets_every_invalidator_setting() -> None:
    settings = Settings.from_env(ENV)
    invalidator = wiring.build_invalidator(settings)
    try:
        assert invalidator.options == InvalidatorOptions(
            page_size=7,
            server_id=4711,
            cache_ttl=77,
            heartbeat_seconds=0.7,
            recheck_delay=0.3,
            stall_after=11.0,
            chunk_rows=123,
            lease_ttl=4.0,
            first_contact_timeout=17.0,
            verify_blocks=6,
            verify_interval=2.0,
            repair_settle=1.5,
        )
        assert invalidator.source == settings.database_url
        assert invalidator.cache.keys.base.startswith("wiring-test")
    finally:
        invalidator.cache.client.close()
    # every field of the options is an ORDERS_* setting the test above moved off its default
    assert {f.name for f in dataclasses.fields(InvalidatorOptions)} == {
        "page_size", "server_id", "cache_ttl", "heartbeat_seconds", "recheck_delay",
        "stall_after", "chunk_rows", "lease_ttl", "first_contact_timeout", "verify_blocks",
        "verify_interval", "repair_settle",
    }  # fmt: skip


def test_the_inspector_gets_its_settings_and_the_callers_database() -> None:
    settings = Settings.from_env(ENV)
    database = wiring.build_database(settings)
    try:
        inspector = wiring.build_inspector(settings, database)
        assert inspector._pages == 9
        assert inspector.cache.keys.base.startswith("wiring-test")
        inspector.cache.client.close()
    finally:
        database.close()


def test_the_api_services_hold_no_settings() -> None:
    """Constructors take values: the API's services do not carry the whole Settings around."""
    assert "settings" not in {f.name for f in dataclasses.fields(wiring.ApiServices)}


def test_each_replica_gets_its_own_pool_breaker_and_the_wait() -> None:
    settings = Settings.from_env(
        {
            **ENV,
            "ORDERS_DATABASE_REPLICA_URLS": "mysql://api@r1:3307/orders,mysql://api@r2/orders",
            "ORDERS_DATABASE_REPLICA_WAIT": "0.4",
            "ORDERS_DATABASE_BREAKER_FAILURES": "5",
        }
    )
    primary = wiring.build_database(settings)
    reads = wiring.build_reads(settings, primary)
    try:
        assert [r.name for r in reads.replicas] == ["r1:3307", "r2:3306"]
        breakers = [r.database.breaker for r in reads.replicas]
        assert [b.name for b in breakers] == ["mysql-replica:r1:3307", "mysql-replica:r2:3306"]
        assert len({id(b) for b in [*breakers, primary.breaker]}) == 3
        assert all(b._threshold == 5 for b in breakers)
        assert reads.primary is primary
        assert reads._wait == 0.4
    finally:
        reads.close()
        primary.close()
