"""The ways invalidation broke when tried from outside (issue 10's cases), each fixed at its root.

The invalidator runs in a thread against the session's binlog MariaDB (or a private one, when the
test must reset or pause it) and a private namespace of Redis; the `mariadb` command-line client
is the writer wherever an admin or a tool would be. After each scenario the API's pages and totals
are compared with MySQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from prometheus_client import REGISTRY

from service.cache.entries import PageEntry, TotalsEntry
from service.cache.keys import CacheKeys, Drop, Invalidation
from service.cli import main
from service.config import Settings
from service.invalidation.mysql_source import check_server
from service.orders import catalog, repository, roles, schema
from service.wiring import build_invalidator, build_redis_cache
from tests.support.fixtures import ThrowawayServers
from tests.support.invalidator_runs import (
    ORDERS,
    Running,
    api,
    api_agrees_with_mysql,
    following,
    seed,
    settings_for,
    warm,
)
from tests.support.servers import Database, MariaDBServer, RedisServer
from tests.support.shared import SHARED_REDIS
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def db(binlog_database: Database, cache_prefix: str) -> Database:
    seed(settings_for(binlog_database, cache_prefix))
    return binlog_database


@pytest.fixture
def settings(db: Database, cache_prefix: str) -> Settings:
    return settings_for(db, cache_prefix)


# ---- case 1: undecodable data ---------------------------------------------------------------


def test_undecodable_bytes_in_another_table_never_stop_invalidation(
    db: Database, settings: Settings
) -> None:
    db.execute("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(20)) CHARACTER SET latin1")
    with following(settings) as running, api(settings) as client:
        warm(client, range(1, 21))
        db.cli("INSERT INTO notes VALUES (1, CONCAT('caf', X'81'));")
        db.cli("UPDATE orders SET status = 'refunded' WHERE id = 57;")
        wait_for(lambda: client.get("/orders/6").get_json()["orders"][6]["status"] == "refunded")
        assert running.alive
        assert api_agrees_with_mysql(client, db)


def test_undecodable_bytes_in_the_orders_table_are_skipped_not_decoded(
    db: Database, settings: Settings
) -> None:
    db.execute("ALTER TABLE orders ADD COLUMN note VARCHAR(20) CHARACTER SET latin1 NULL")
    with following(settings) as running, api(settings) as client:
        warm(client, range(1, 21))
        db.cli("UPDATE orders SET note = CONCAT('caf', X'81'), status = 'refunded' WHERE id = 57;")
        wait_for(lambda: client.get("/orders/6").get_json()["orders"][6]["status"] == "refunded")
        db.cli("UPDATE orders SET status = 'refunded' WHERE id = 133;")  # and the stream goes on
        wait_for(lambda: client.get("/orders/14").get_json()["orders"][2]["status"] == "refunded")
        assert running.alive
        assert client.get("/orders/1").headers["X-Cache"] == "HIT"  # not a reset: precise


# ---- case 2: TRUNCATE races and recount -------------------------------------------------------


def test_truncate_then_insert_in_quick_succession_keeps_exact_counts(
    db: Database, settings: Settings
) -> None:
    with following(settings), api(settings) as client:
        warm(client, range(1, 21))
        db.cli(
            "TRUNCATE TABLE orders; INSERT INTO orders (customer_id, customer_name, "
            "customer_email, status, amount, currency, item_count) VALUES "
            "(1, 'a', 'a@example.com', 'paid', 1.00, 'EUR', 1), "
            "(2, 'b', 'b@example.com', 'paid', 2.00, 'EUR', 1);"
        )
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == 2)
        assert client.get("/orders/2").status_code == 404
        with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
            assert repository.count_orders(cur) == 2
        assert api_agrees_with_mysql(client, db)


def test_the_invalidators_own_role_is_enough_to_keep_counts_exact_after_truncate(
    db: Database, settings: Settings
) -> None:
    """Least privilege (service/orders/roles.py) and self-repair meet: the invalidator's MySQL
    user rebuilds the counts after a TRUNCATE race with only the grants its role has."""
    user = f"inv_{db.name[-8:]}"
    password = "inv-pw-1"
    db.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
    try:
        for statement in roles.grants("invalidator", user, db.name, "127.0.0.1"):
            db.execute(statement)
        url = db.url.replace("mysql://root@", f"mysql://{user}:{password}@")
        own = dataclasses.replace(
            settings, database_url=Settings.from_env({"ORDERS_DATABASE_URL": url}).database_url
        )
        with following(own), api(settings) as client:
            warm(client, range(1, 21))
            db.cli(
                "TRUNCATE TABLE orders; INSERT INTO orders (customer_id, customer_name, "
                "customer_email, status, amount, currency, item_count) VALUES "
                "(1, 'a', 'a@example.com', 'paid', 1.00, 'EUR', 1);"
            )
            wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == 1)
            assert api_agrees_with_mysql(client, db)
    finally:
        db.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_recount_invalidates_the_cache_it_corrected(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.execute("UPDATE order_buckets SET row_count = row_count + 5")  # counts drifted
    with api(settings) as client:
        assert client.get("/orders/1").get_json()["total_orders"] == ORDERS + 5  # cached wrong
        for name, value in {
            "ORDERS_DATABASE_URL": db.url,
            "ORDERS_REDIS_URL": SHARED_REDIS,
            "ORDERS_CACHE_PREFIX": settings.cache_prefix,
        }.items():
            monkeypatch.setenv(name, value)
        result = CliRunner().invoke(main, ["recount"])
        assert result.exit_code == 0, result.output
        assert "invalidated" in result.output
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == ORDERS)


# ---- case 3: foreign-key cascades ---------------------------------------------------------------


def _add_cascading_foreign_key(db: Database) -> None:
    db.execute(
        "CREATE TABLE customers (id BIGINT UNSIGNED PRIMARY KEY)",
        "INSERT INTO customers SELECT DISTINCT customer_id FROM orders",
        "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) "
        "REFERENCES customers (id) ON DELETE CASCADE",
    )


def test_a_cascading_foreign_key_is_refused_at_migrate(db: Database) -> None:
    _add_cascading_foreign_key(db)
    with (
        contextlib.closing(db.connect()) as conn,
        pytest.raises(schema.CascadingForeignKeys, match=r"orders_customer_fk.*ON DELETE CASCADE"),
    ):
        schema.migrate(conn)


def test_a_cascading_foreign_key_is_refused_at_invalidator_start(
    db: Database, settings: Settings
) -> None:
    _add_cascading_foreign_key(db)
    with pytest.raises(schema.CascadingForeignKeys, match="orders_customer_fk"):
        Running(settings)


def test_a_cascading_foreign_key_added_while_running_stops_the_invalidator(
    db: Database, settings: Settings
) -> None:
    running = Running(settings)
    try:
        _add_cascading_foreign_key(db)
        wait_for(lambda: not running.alive)
        assert isinstance(running.error, schema.CascadingForeignKeys)
    finally:
        running.stop()


# ---- case 4: statement-logged writes ----------------------------------------------------------


def test_a_statement_logged_write_from_another_database_is_seen(
    db: Database, settings: Settings
) -> None:
    other = db.server.create_database()
    with following(settings), api(settings) as client:
        warm(client, range(1, 21))
        other.cli(
            "SET SESSION binlog_format = 'STATEMENT'; "
            f"UPDATE `{db.name}`.orders SET status = 'refunded' WHERE id = 57;"
        )
        wait_for(lambda: client.get("/orders/6").get_json()["orders"][6]["status"] == "refunded")
        assert api_agrees_with_mysql(client, db)


def test_a_server_logging_mixed_is_followed_with_a_warning(throwaway: ThrowawayServers) -> None:
    server = throwaway.mariadb(extra_args=["--binlog-format=MIXED"])
    info = check_server(server_source(server))
    assert not info.logs_rows


def server_source(server: MariaDBServer) -> Any:
    return Settings.from_env({"ORDERS_DATABASE_URL": server.database_url("mysql")}).database_url


# ---- case 5: table swaps and DROP + CREATE ----------------------------------------------------


def _swap_in_a_copy(db: Database) -> None:
    db.cli(
        "CREATE TABLE orders_new LIKE orders; INSERT INTO orders_new SELECT * FROM orders; "
        "RENAME TABLE orders TO orders_old, orders_new TO orders;"
    )


def test_a_table_swap_is_noticed_reported_and_repaired_by_migrate(
    db: Database, settings: Settings
) -> None:
    """The invalidator never makes DDL itself (issue 18, case 5): it reports what is missing
    (/readyz, orders_invalidator_schema_problems) and ``migrate`` restores it."""
    with following(settings), api(settings) as client:
        warm(client, range(1, 21))
        _swap_in_a_copy(db)
        wait_for(lambda: "trigger orders_count_move" in client.get("/readyz").get_data(True))
        assert _triggers_on_orders(db) == 0
        with contextlib.closing(db.connect()) as conn:
            schema.migrate(conn)
        assert _triggers_on_orders(db) == 3
        db.cli("DELETE FROM orders WHERE id = 5;")
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == ORDERS - 1)
        assert api_agrees_with_mysql(client, db)


def test_migrate_restores_what_a_drop_and_create_lost(db: Database) -> None:
    db.cli(
        "CREATE TABLE orders_shape LIKE orders; DROP TABLE orders; "
        "CREATE TABLE orders LIKE orders_shape; DROP TABLE orders_shape;"
    )
    assert _triggers_on_orders(db) == 0
    with contextlib.closing(db.connect()) as conn:
        applied = schema.migrate(conn)
    assert any("repaired" in step and "trigger orders_count_insert" in step for step in applied)
    assert _triggers_on_orders(db) == 3
    db.cli(
        "INSERT INTO orders (customer_id, customer_name, customer_email, status, amount, "
        "currency, item_count) VALUES (1, 'a', 'a@example.com', 'paid', 1.00, 'EUR', 1);"
    )
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        assert repository.count_orders(cur) == 1


def _triggers_on_orders(db: Database) -> int:
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        missing = catalog.missing_schema_objects(cur)
    return len(catalog.COUNTING_TRIGGERS) - sum(item.startswith("trigger") for item in missing)


# ---- case 9: a position carries the server's identity -----------------------------------------


def test_a_position_from_another_history_is_never_resumed(
    throwaway: ThrowawayServers, cache_prefix: str
) -> None:
    server = throwaway.mariadb()
    db = server.create_database()
    settings = settings_for(db, cache_prefix)
    seed(settings)
    with api(settings) as client:
        with following(settings):
            warm(client, range(1, 21))
            db.cli("UPDATE orders SET status = 'paid' WHERE id = 1;")  # pushes the offset on
            wait_for(lambda: client.get("/orders/1").get_json()["orders"][0]["status"] == "paid")
            warm(client, range(1, 21))
        server.cli("RESET MASTER;")
        db.cli("UPDATE orders SET status = 'refunded' WHERE id = 57;")  # early in the new binlog
        with following(settings):
            wait_for(
                lambda: client.get("/orders/6").get_json()["orders"][6]["status"] == "refunded"
            )
            assert api_agrees_with_mysql(client, db)


# ---- case 10: the totals' freshness follows the API's TTL -------------------------------------


def test_totals_written_by_the_invalidator_follow_the_ttl_the_api_published(
    db: Database, settings: Settings, shared_redis: redis.Redis
) -> None:
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    shared_redis.hset(keys.config, mapping={"ttl": 7, "page_size": settings.page_size})
    with following(settings):
        db.cli("DELETE FROM orders WHERE id = 5;")
        wait_for(lambda: shared_redis.get(keys.totals) is not None)
        entry = TotalsEntry.decode(shared_redis.get(keys.totals))  # type: ignore[arg-type]
    assert entry.total_orders == ORDERS - 1
    fresh_for = entry.fresh_until_ms / 1000 - time.time()
    assert 0 < fresh_for <= 7


def test_totals_stay_briefly_fresh_while_the_api_ttl_is_unknown(
    db: Database, settings: Settings, shared_redis: redis.Redis
) -> None:
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    with following(settings):
        db.cli("DELETE FROM orders WHERE id = 5;")
        wait_for(lambda: shared_redis.get(keys.totals) is not None)
        entry = TotalsEntry.decode(shared_redis.get(keys.totals))  # type: ignore[arg-type]
    assert entry.fresh_until_ms / 1000 - time.time() <= 5  # never the invalidator's own 3600 s


# ---- the commit-visibility window ---------------------------------------------------------------


def test_a_stale_fill_between_commit_and_visibility_is_invalidated_again(
    db: Database, cache_prefix: str, shared_redis: redis.Redis
) -> None:
    """The window cannot be forced from outside MariaDB, so a fill of the old page is written
    right after the first invalidation (what a reader that did not yet see the commit would
    store); the second invalidation, one recheck delay later, must remove it."""
    settings = settings_for(db, cache_prefix, ORDERS_INVALIDATOR_RECHECK_DELAY="1.5")
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    cache = build_redis_cache(settings)
    pubsub = shared_redis.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(keys.channel)
    try:
        with following(settings), api(settings) as client:
            old = client.get("/orders/6")
            assert old.status_code == 200
            assert wait_for(lambda: pubsub.get_message(timeout=0.1) is not None) >= 0  # subscribed
            db.cli("UPDATE orders SET status = 'refunded' WHERE id = 57;")
            first = _next_message_for(pubsub, b"p6")
            lease = cache.lease_page(6)
            assert lease is not None
            stale = PageEntry(int(time.time() * 1000) + 60_000, "stale", old.get_data())
            assert cache.fill_page(
                6, lease.token, stale
            )  # the stale fill lands after the first step
            second = _next_message_for(pubsub, b"p6")
            assert second - first >= 1.0
            assert shared_redis.get(keys.page(6)) is None
            assert client.get("/orders/6").get_json()["orders"][6]["status"] == "refunded"
    finally:
        pubsub.close()


def _next_message_for(pubsub: Any, token: bytes, seconds: float = 15) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "message" and token in message["data"].split():
            return time.monotonic()
    raise AssertionError(f"no invalidation with {token!r}")


# ---- heartbeat, checkpoint, health ------------------------------------------------------------


def test_the_checkpoint_advances_through_the_binlog_while_nothing_is_written(
    db: Database, settings: Settings, shared_redis: redis.Redis
) -> None:
    keys = CacheKeys(settings.cache_prefix, settings.page_size)
    with following(settings):
        wait_for(lambda: shared_redis.get(keys.checkpoint) is not None)
        first = int(shared_redis.get(keys.checkpoint))  # type: ignore[arg-type]
        wait_for(lambda: int(shared_redis.get(keys.checkpoint)) >= first + 1000)  # type: ignore[arg-type]
        seconds, micros = shared_redis.time()
        age_ms = seconds * 1000 + micros // 1000 - int(shared_redis.get(keys.checkpoint))  # type: ignore[arg-type]
    assert 0 <= age_ms < 5000


def test_healthz_fails_when_the_stream_stalls_and_recovers_after(
    throwaway: ThrowawayServers, cache_prefix: str
) -> None:
    server = throwaway.mariadb()
    db = server.create_database()
    settings = settings_for(db, cache_prefix, ORDERS_INVALIDATOR_STALL_AFTER="2")
    seed(settings)
    with following(settings) as running:
        assert running.invalidator.healthy()
        server.pause()
        try:
            wait_for(lambda: not running.invalidator.healthy(), 20)
        finally:
            server.resume()
        wait_for(running.invalidator.healthy, 30)


def test_the_lag_grows_while_redis_refuses_writes(
    throwaway: ThrowawayServers, binlog_database: Database, cache_prefix: str
) -> None:
    private_redis: RedisServer = throwaway.redis()
    settings = settings_for(binlog_database, cache_prefix, redis_url=private_redis.url)
    seed(settings)
    admin = redis.Redis(host="127.0.0.1", port=private_redis.port)
    with following(settings) as running:
        wait_for(lambda: running.invalidator.checkpoint_age() < 2)
        admin.execute_command("CLIENT", "PAUSE", 8000, "WRITE")
        try:
            binlog_database.cli("UPDATE orders SET status = 'refunded' WHERE id = 57;")
            wait_for(lambda: running.invalidator.checkpoint_age() > 4, 20)
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        wait_for(lambda: running.invalidator.checkpoint_age() < 2, 20)
    admin.close()


# ---- fencing ------------------------------------------------------------------------------------


def test_only_one_invalidator_leads_and_a_standby_takes_over_when_it_stops(
    db: Database, settings: Settings
) -> None:
    first = Running(settings)
    second = Running(settings, wait_active=False)
    try:
        assert first.invalidator.active.is_set()
        assert not second.invalidator.active.is_set()
        with api(settings) as client:
            warm(client, range(1, 21))
            first.stop()
            took_over = wait_for(second.invalidator.active.is_set, 15)
            db.cli("UPDATE orders SET status = 'refunded' WHERE id = 57;")
            wait_for(
                lambda: client.get("/orders/6").get_json()["orders"][6]["status"] == "refunded"
            )
        assert took_over < 5
    finally:
        second.stop()
        if first.alive:
            first.stop()


def test_metrics_of_the_invalidator_are_registered(settings: Settings) -> None:
    from service.observability import metrics

    metrics.prepare_invalidator()
    assert (
        REGISTRY.get_sample_value("orders_invalidator_events_total", {"kind": "reset"}) is not None
    )


# ---- a fresh start and the replica gate ---------------------------------------------------------


def test_a_fresh_start_records_that_fills_read_the_primary(settings: Settings) -> None:
    """A fresh start clears the cache from a position the old GTID state may not reach: a commit
    between the two, read from a replica that has only the old state, would be cached with no
    drop ever coming for it. So the clearing step records ``-`` (read the primary) until the
    stream records a state of its own."""
    invalidator = build_invalidator(settings)
    keys = invalidator.cache.keys
    invalidator.cache.client.set(keys.gtid, "0-1-1")  # a previous term's last drop
    applied: list[Invalidation] = []
    apply_step = invalidator.cache.apply_step

    def recording(change: Invalidation) -> int:
        applied.append(change)
        return apply_step(change)

    invalidator.cache.apply_step = recording  # type: ignore[method-assign]
    thread = threading.Thread(target=invalidator.run, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: any(isinstance(c.totals, Drop) for c in applied), 30, "the fresh start's step"
        )
    finally:
        invalidator.stop()
        thread.join(15)
    clearing = next(c for c in applied if isinstance(c.totals, Drop))
    assert clearing.gtid == "-"
