"""Least privilege, exercised for real: a MySQL user per role with exactly the grants
``service.orders.roles`` declares (on the shared MariaDB and a throwaway binlog MariaDB, users
with unique names, dropped afterwards), and Redis ACL users on a throwaway redis-server (what
each Redis role may and may not do: test_redis_roles.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest
import redis

from service import close_app, create_app
from service.cache.keys import CacheKeys
from service.cache.store import load_functions
from service.config import Settings
from service.orders import repository, roles
from service.orders.database import DatabaseUnavailable
from tests.security.conftest import Launched, base_env, run_command
from tests.support.servers import Database, RedisServer

pytestmark = pytest.mark.integration

PASSWORD = "role-pw-" + uuid.uuid4().hex[:8]
ER_DENIED = {1142, 1044, 1227, 1045, 1370, 1143}  # command, database, privilege, access, column


class Accounts:
    """Throwaway MySQL accounts on one server, dropped at the end."""

    def __init__(self, admin: Callable[[], Any], host: str, port: int) -> None:
        self._admin = admin
        self.host, self.port = host, port
        self.made: list[str] = []

    def create(self, role: str, database: str) -> str:
        user = f"orders_test_{role[:3]}_{uuid.uuid4().hex[:8]}"
        with self._admin() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
            self.made.append(user)
            for statement in roles.grants(role, user, database, host="127.0.0.1"):
                cursor.execute(statement)
        return user

    def url(self, user: str, database: str) -> str:
        return f"mysql://{user}:{PASSWORD}@{self.host}:{self.port}/{database}"

    def connect(self, user: str, database: str) -> Any:
        return pymysql.connect(
            host=self.host, port=self.port, user=user, password=PASSWORD, database=database
        )

    def drop_all(self) -> None:
        with self._admin() as connection, connection.cursor() as cursor:
            for user in self.made:
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


@pytest.fixture
def shared_accounts(seeded_database_url: str) -> Iterator[Accounts]:
    parts = urlsplit(seeded_database_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 3306

    def admin() -> Any:
        return pymysql.connect(host=host, port=port, user="root", password="")

    accounts = Accounts(admin, host, port)
    yield accounts
    accounts.drop_all()


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def denied(connection: Any, statement: str) -> int:
    with connection.cursor() as cursor:
        try:
            cursor.execute(statement)
        except pymysql.err.MySQLError as exc:
            return int(exc.args[0])
    return 0


def test_the_api_user_reads_pages_and_can_change_nothing(
    shared_accounts: Accounts, seeded_database_url: str, cache_prefix: str
) -> None:
    database = database_of(seeded_database_url)
    user = shared_accounts.create("api", database)
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": shared_accounts.url(user, database),
            "ORDERS_REDIS_URL": "redis://127.0.0.1:6379/0",
            "ORDERS_CACHE_PREFIX": cache_prefix,
        }
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/orders/1").status_code == 200
        assert client.get("/readyz").json["checks"]["mysql"] == "ok"
    finally:
        close_app(app)
    with shared_accounts.connect(user, database) as connection:
        for statement in (
            "UPDATE orders SET status = 'cancelled' WHERE id = 1",
            "DELETE FROM orders WHERE id = 1",
            "INSERT INTO orders (id) VALUES (999999)",
            "CREATE TABLE sneaky (id INT)",
            "DROP TABLE orders",
            "ALTER TABLE orders ADD COLUMN x INT",
            f"GRANT SELECT ON `{database}`.* TO CURRENT_USER",
            "SHOW MASTER STATUS",
            "SELECT * FROM mysql.user",
        ):
            assert denied(connection, statement) in ER_DENIED, statement


def test_the_replica_user_reads_pages_waits_for_a_gtid_and_sees_no_binlog(
    shared_accounts: Accounts, seeded_database_url: str
) -> None:
    """What a read replica's user runs (service/orders/replicas.py, gtid.py) with the grants
    `orders-service grants replica` prints: SELECT only, nothing of the binlog."""
    from service.orders import gtid_waits

    database = database_of(seeded_database_url)
    user = shared_accounts.create(roles.REPLICA, database)
    with shared_accounts.connect(user, database) as connection, connection.cursor() as cursor:
        assert repository.fetch_page(cursor, 1, 10)
        assert repository.count_orders(cursor) > 0
        gtid_waits.latest_heartbeat(cursor)  # the lag probe: allowed (None when no heartbeat yet)
        # an empty state is reached at once on any server; the statement needs no privilege
        cursor.execute("SELECT MASTER_GTID_WAIT('', 0.001)")
        assert gtid_waits.reached(cursor.fetchone())
    with shared_accounts.connect(user, database) as connection:
        for statement in (
            "UPDATE orders SET status = 'cancelled' WHERE id = 1",
            "SHOW MASTER STATUS",
            "SHOW BINARY LOGS",
            "SELECT * FROM mysql.user",
        ):
            assert denied(connection, statement) in ER_DENIED, statement


def test_the_migrate_user_has_no_rights_outside_its_database(
    shared_accounts: Accounts, seeded_database_url: str
) -> None:
    database = database_of(seeded_database_url)
    user = shared_accounts.create("migrate", database)
    with shared_accounts.connect(user, database) as connection:
        assert denied(connection, "CREATE TABLE migrate_probe (id INT)") == 0
        assert denied(connection, "DROP TABLE migrate_probe") == 0
        assert denied(connection, "SELECT COUNT(*) FROM orders") == 0
        for statement in (
            "CREATE DATABASE orders_test_not_allowed",
            "SELECT * FROM mysql.user",
            "SHOW MASTER STATUS",
            f"GRANT SELECT ON `{database}`.* TO CURRENT_USER",
        ):
            assert denied(connection, statement) in ER_DENIED, statement


def test_each_role_runs_its_own_step_against_a_binlog_server(
    binlog_database: Database,
    cache_prefix: str,
    launch: Callable[..., Launched],
    redis_server: RedisServer,
) -> None:
    """migrate and seed as the migrate user, the invalidator as its MySQL user and its Redis ACL
    user (the rules `grants` prints, the functions loaded by the admin): it follows the binlog,
    records the position of a change and moves the checkpoint; in MySQL it may write only its
    heartbeat."""
    server = binlog_database.server
    accounts = Accounts(server.connect, "127.0.0.1", server.port)
    admin = redis.Redis(port=redis_server.port)
    load_functions(admin)
    redis_user = f"invalidator_{uuid.uuid4().hex[:6]}"
    admin.execute_command(
        "ACL",
        "SETUSER",
        redis_user,
        *roles.redis_acl("invalidator", redis_user, cache_prefix),
        f">{PASSWORD}",
    )
    try:
        name = binlog_database.name
        migrate_user = accounts.create("migrate", name)
        env = base_env(
            ORDERS_DATABASE_URL=accounts.url(migrate_user, name),
            ORDERS_CACHE_PREFIX=cache_prefix,
        )
        assert "migrations applied" in run_command(["migrate"], env)
        assert "seeded 50 orders" in run_command(["seed", "--orders", "50"], env)
        invalidator_user = accounts.create("invalidator", name)
        env = base_env(
            ORDERS_DATABASE_URL=accounts.url(invalidator_user, name),
            ORDERS_CACHE_PREFIX=cache_prefix,
            ORDERS_REDIS_URL=f"redis://{redis_user}:{PASSWORD}@127.0.0.1:{redis_server.port}/0",
        )
        invalidator = launch(["invalidate"], env)
        invalidator.wait_for(lambda: "following binlog" in invalidator.output(), "following")
        keys = CacheKeys(cache_prefix, Settings.from_env(env).page_size)
        before = admin.get(keys.binlog_position)
        binlog_database.execute("UPDATE orders SET status = 'cancelled' WHERE id = 1")
        invalidator.wait_for(
            lambda: admin.get(keys.binlog_position) not in (None, before), "an invalidation"
        )
        invalidator.wait_for(lambda: admin.get(keys.checkpoint) is not None, "a checkpoint")
        admin.close()
        assert '"level":"error"' not in invalidator.output()
        with accounts.connect(invalidator_user, name) as connection:
            with connection.cursor() as cursor:  # the heartbeat write the invalidator makes
                repository.write_heartbeat(cursor, 99, 1)
            assert denied(connection, "SHOW MASTER STATUS") == 0
            assert denied(connection, "UPDATE orders SET status = 'paid' WHERE id = 1") in ER_DENIED
            assert denied(connection, "DELETE FROM orders") in ER_DENIED
            assert denied(connection, "CREATE TABLE sneaky (id INT)") in ER_DENIED
    finally:
        accounts.drop_all()


@pytest.fixture
def acl_redis(redis_server: RedisServer) -> Callable[[str, str], str]:
    """``acl(role, prefix)``: a user for the role on the throwaway Redis; returns its URL."""
    admin = redis.Redis(port=redis_server.port)

    def make(role: str, prefix: str) -> str:
        user = f"{role}_{uuid.uuid4().hex[:6]}"
        admin.execute_command(
            "ACL", "SETUSER", user, *roles.redis_acl(role, user, prefix), f">{PASSWORD}"
        )
        return f"redis://{user}:{PASSWORD}@127.0.0.1:{redis_server.port}/0"

    return make


def test_the_api_redis_user_can_follow_invalidations(acl_redis: Callable[[str, str], str]) -> None:
    url = acl_redis("api", "shop")
    pubsub = redis.Redis.from_url(url).pubsub()
    pubsub.subscribe("shop:invalidations")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    pubsub.ping()
    pubsub.close()
    other = redis.Redis.from_url(url).pubsub()
    other.subscribe("other:invalidations")
    with pytest.raises(redis.exceptions.NoPermissionError):  # the refusal is the next reply
        other.get_message(timeout=5)
    other.close()


def test_the_invalidator_user_cannot_touch_triggers_or_lock_tables(
    shared_accounts: Accounts, seeded_database_url: str
) -> None:
    """Missing triggers are restored by `orders-service migrate`, never the invalidator; it
    keeps only the block-count writes its recount makes (a transaction, no LOCK TABLES)."""
    database = database_of(seeded_database_url)
    user = shared_accounts.create("invalidator", database)
    probe = f"`{database}`.orders_probe_{uuid.uuid4().hex[:6]}"  # stands in for a counting one
    with shared_accounts._admin() as admin, admin.cursor() as cursor:
        cursor.execute(
            f"CREATE TRIGGER {probe} AFTER INSERT ON `{database}`.heartbeat "
            "FOR EACH ROW SET @orders_probe = 1"
        )
    try:
        with shared_accounts.connect(user, database) as connection:
            for statement in (
                "CREATE TRIGGER orders_reject BEFORE INSERT ON orders FOR EACH ROW "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'no'",
                f"DROP TRIGGER {probe}",
                "LOCK TABLES orders WRITE",
                "LOCK TABLES orders READ",
                "UPDATE orders SET status = status WHERE id < 0",
                "DELETE FROM schema_migrations WHERE version = 'none'",
            ):
                assert denied(connection, statement) in ER_DENIED, statement
            assert denied(connection, "SELECT COUNT(*) FROM order_buckets") == 0
            with connection.cursor() as cursor:
                repository.recount_buckets(cursor)  # what it runs after a TRUNCATE
    finally:
        with shared_accounts._admin() as admin, admin.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS {probe}")
            cursor.execute(f"DROP TRIGGER IF EXISTS `{database}`.orders_reject")


def test_the_api_user_cannot_hold_the_migration_lock(
    shared_accounts: Accounts, seeded_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every name the API could know (the old fixed one, anything it can read) is not the lock
    migrate takes: an API pod squatting it cannot stall a rollout's migrations."""
    from service.orders import schema

    monkeypatch.setattr(schema, "LOCK_TIMEOUT_SECONDS", 2)
    database = database_of(seeded_database_url)
    api_user = shared_accounts.create("api", database)
    migrate_user = shared_accounts.create("migrate", database)
    with shared_accounts.connect(api_user, database) as squatter:
        with squatter.cursor() as cursor:
            # other runs of the old code on this server take the same name for a moment
            cursor.execute("SELECT GET_LOCK(%s, 30)", ("orders_service_migrate",))
            assert cursor.fetchone()[0] == 1
        with shared_accounts.connect(migrate_user, database) as connection:
            assert schema.migrate(connection) == []


def test_the_api_sessions_take_no_row_locks(
    shared_accounts: Accounts, seeded_database_url: str
) -> None:
    """The API's pool opens READ ONLY sessions: ``SELECT ... FOR UPDATE`` from the API process
    is refused even on MariaDB, whose SELECT grant allows it (MySQL 8.0.22+ needs UPDATE, DELETE
    or LOCK TABLES, which the API lacks). MariaDB still allows LOCK IN SHARE MODE there; with
    autocommit it ends with its statement (docs/security.md, "Roles")."""
    from service.wiring import build_database

    database = database_of(seeded_database_url)
    user = shared_accounts.create("api", database)
    settings = Settings.from_env({"ORDERS_DATABASE_URL": shared_accounts.url(user, database)})
    db = build_database(settings)
    try:
        assert db.run("probe", lambda c: c.execute("SELECT id FROM orders LIMIT 1")) == 1
        with pytest.raises(
            DatabaseUnavailable, match="1792"
        ):  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
            db.run("probe", lambda c: c.execute("SELECT id FROM orders WHERE id = 1 FOR UPDATE"))
    finally:
        db.close()
    assert not any(
        privilege in " ".join(roles.grants("api", user, database))
        for privilege in ("UPDATE", "DELETE", "LOCK TABLES", "INSERT")
    )
