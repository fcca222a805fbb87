"""Issue 18, cases 3, 4, 5 and 8: DDL read as the server reads it, block counts verified instead of
trusted, repairs that never fight an operator, and key columns the block arithmetic cannot hold.

Real servers throughout: the session's binlog MariaDB (and a private one started with
``lower_case_table_names=1`` holding a partitioned orders table), the shared Redis under a private
prefix, the invalidator in a thread, the `mariadb` client as the admin, and the API's pages and
totals compared with one MySQL snapshot after each scenario (tests/support/consistency.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from service.cli import main
from service.config import Settings
from service.orders import catalog, roles, schema
from service.orders.database import connect
from tests.support.consistency import assert_consistent
from tests.support.invalidator_runs import (
    ORDERS,
    api,
    following,
    seed,
    settings_for,
    warm,
)
from tests.support.servers import Database, MariaDBServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PAGES = range(1, ORDERS // 10 + 1)


@pytest.fixture
def db(binlog_database: Database, cache_prefix: str) -> Database:
    seed(settings_for(binlog_database, cache_prefix))
    return binlog_database


@pytest.fixture
def settings(db: Database, cache_prefix: str) -> Settings:
    return settings_for(db, cache_prefix)


def consistent(client: FlaskClient, db: Database, settle: float = 10.0) -> float:
    """The checker: every page and the totals the API serves equal one MySQL snapshot."""

    def fetch(number: int) -> tuple[int, dict[str, object] | None]:
        answer = client.get(f"/orders/{number}")
        return answer.status_code, answer.get_json() if answer.status_code == 200 else None

    return assert_consistent(fetch, db.connect, 10, settle=settle)


def counts_exact(db: Database) -> bool:
    """Every block count equals the rows in its block (and no block with rows lacks one)."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT bucket, row_count FROM order_buckets WHERE row_count <> 0")
        kept = {int(b): int(n) for b, n in cur.fetchall()}
        cur.execute("SELECT id DIV 4096, COUNT(*) FROM orders GROUP BY id DIV 4096")
        real = {int(b): int(n) for b, n in cur.fetchall()}
    return kept == real


def event_count(kind: str) -> float:
    value = REGISTRY.get_sample_value("orders_invalidator_events_total", {"kind": kind})
    return value or 0.0


def readyz(client: FlaskClient) -> str:
    return client.get("/readyz").get_data(as_text=True)


def run_migrate(db: Database, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ORDERS_DATABASE_URL", db.url)
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 0, result.output
    return result.output


# ---- case 3: DDL read as the server reads it ------------------------------------------------


@pytest.fixture(scope="module")
def folding_mariadb() -> Iterator[MariaDBServer]:
    """A private MariaDB that compares table names case-insensitively."""
    server = MariaDBServer.create(extra_args=["--lower-case-table-names=1"])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def partitioned(folding_mariadb: MariaDBServer, cache_prefix: str) -> Iterator[Database]:
    """200 orders in a table partitioned by id (p0: 1-100, p1: the rest)."""
    database = folding_mariadb.create_database()
    seed(settings_for(database, cache_prefix))
    database.execute(
        "ALTER TABLE orders PARTITION BY RANGE (id) "
        "(PARTITION p0 VALUES LESS THAN (101), PARTITION p1 VALUES LESS THAN MAXVALUE)"
    )
    try:
        yield database
    finally:
        folding_mariadb.drop_database(database.name)


def test_truncate_of_Orders_is_a_reset_and_a_recount_where_names_fold(
    partitioned: Database, cache_prefix: str
) -> None:
    settings = settings_for(partitioned, cache_prefix)
    with following(settings), api(settings) as client:
        warm(client, PAGES)
        partitioned.cli("TRUNCATE TABLE Orders;")
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == 0, 20)
        assert counts_exact(partitioned)
        consistent(client, partitioned)


def test_truncate_partition_is_a_reset_and_a_recount(
    partitioned: Database, cache_prefix: str
) -> None:
    settings = settings_for(partitioned, cache_prefix)
    with following(settings), api(settings) as client:
        warm(client, PAGES)
        partitioned.cli("ALTER TABLE ORDERS TRUNCATE PARTITION p0;")
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == ORDERS - 100, 20)
        assert counts_exact(partitioned)
        consistent(client, partitioned)


def test_exchange_partition_with_orders_is_a_reset_and_a_recount(
    db: Database, settings: Settings
) -> None:
    db.cli(
        "CREATE TABLE arch LIKE orders; "
        "ALTER TABLE arch PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN MAXVALUE); "
        "INSERT INTO arch SELECT * FROM orders WHERE id <= 99;"
    )
    with following(settings), api(settings) as client:
        warm(client, PAGES)
        db.cli("ALTER TABLE arch EXCHANGE PARTITION p0 WITH TABLE orders;")
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == 99, 20)
        assert counts_exact(db)
        consistent(client, db)


# ---- case 4: counts verified, not trusted -----------------------------------------------------


def test_update_ignore_colliding_on_the_key_counts_only_the_moves_that_happened(
    db: Database, settings: Settings
) -> None:
    with following(settings), api(settings) as client:
        warm(client, PAGES)
        repaired = event_count("count_drift_repaired")
        stop = threading.Event()
        writer = threading.Thread(target=_write_meanwhile, args=(db, stop), daemon=True)
        writer.start()
        try:
            # ids 1..100 collide with 101..200 and stay; 101..150 move to 201..250
            db.cli("UPDATE IGNORE orders SET id = id + 100 WHERE id <= 150 ORDER BY id;")
            # 240..250 get twins in block 24; then 230..239 move there and 240..250 collide:
            # the old trigger counted 11 moves across blocks that did not happen
            db.cli(
                "INSERT INTO orders (id, customer_id, customer_name, customer_email, status, "
                "amount, currency, item_count) SELECT id + 100000, customer_id, customer_name, "
                "customer_email, status, amount, currency, item_count FROM orders "
                "WHERE id BETWEEN 240 AND 250;"
                "UPDATE IGNORE orders SET id = id + 100000 WHERE id BETWEEN 230 AND 250 "
                "ORDER BY id;"
            )
        finally:
            stop.set()
            writer.join(10)
        assert counts_exact(db)
        assert event_count("count_drift_repaired") == repaired  # the triggers were right
        consistent(client, db)


def _write_meanwhile(db: Database, stop: threading.Event) -> None:
    """Inserts and deletes at the tail while the collisions run (load on the same blocks)."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        while not stop.is_set():
            cur.execute(
                "INSERT INTO orders (customer_id, customer_name, customer_email, status, amount, "
                "currency, item_count) VALUES (1, 'w', 'w@example.com', 'paid', 1.00, 'EUR', 1)"
            )
            cur.execute("DELETE FROM orders WHERE id = LAST_INSERT_ID() AND id % 2 = 0")


def test_a_drifted_block_count_is_found_repaired_and_counted(
    db: Database, settings: Settings
) -> None:
    with following(settings), api(settings) as client:
        warm(client, PAGES)
        before = event_count("count_drift_repaired")
        db.execute("UPDATE order_buckets SET row_count = row_count + 5 WHERE bucket = 0")
        repaired_in = wait_for(lambda: counts_exact(db), 30, "the drift repaired")
        assert event_count("count_drift_repaired") == before + 1
        consistent(client, db)
    print(f"count drift repaired in {repaired_in:.2f} s")


def test_a_drift_made_by_writes_is_repaired_within_seconds_not_a_tour(
    db: Database, settings: Settings
) -> None:
    """400 blocks take the tour 100 s; the block a write lands in is checked first."""
    db.execute(
        "INSERT INTO orders (id, customer_id, customer_name, customer_email, status, amount, "
        "currency, item_count) SELECT seq * 4096 + 1, 1, 'far', 'far@example.com', 'paid', 1.00, "
        "'EUR', 1 FROM seq_1_to_400"
    )
    with following(settings), api(settings) as client:
        warm(client, PAGES)
        db.cli(  # a bulk writer that says it counts its rows and does not
            "SET @orders_rows_counted_by_writer = 1; "
            "INSERT INTO orders (id, customer_id, customer_name, customer_email, status, amount, "
            "currency, item_count) VALUES (399 * 4096 + 7, 1, 'a', 'a@example.com', 'paid', "
            "1.00, 'EUR', 1);"
        )
        repaired_in = wait_for(lambda: counts_exact(db), 15, "the drift repaired")
        consistent(client, db)
    print(f"a drift made by a write repaired in {repaired_in:.2f} s")


def test_the_invalidators_own_role_is_enough_to_verify_and_repair_counts(
    db: Database, settings: Settings
) -> None:
    """Least privilege (service/orders/roles.py): the share-locked count and the count row
    rewritten need no grant beyond the invalidator's role."""
    user, password = f"ver_{db.name[-8:]}", "ver-pw-1"
    db.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
    try:
        for statement in roles.grants("invalidator", user, db.name, "127.0.0.1"):
            db.execute(statement)
        url = db.url.replace("mysql://root@", f"mysql://{user}:{password}@")
        own = dataclasses.replace(
            settings, database_url=Settings.from_env({"ORDERS_DATABASE_URL": url}).database_url
        )
        with following(own), api(settings) as client:
            warm(client, PAGES)
            db.execute("UPDATE order_buckets SET row_count = row_count - 3 WHERE bucket = 0")
            wait_for(lambda: counts_exact(db), 30, "the drift repaired")
            consistent(client, db)
    finally:
        db.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_a_dropped_trigger_is_reported_within_seconds_and_migrate_repairs_it(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with following(settings), api(settings) as client:
        warm(client, PAGES)
        db.cli("DROP TRIGGER orders_count_insert;")
        noticed = wait_for(lambda: "trigger orders_count_insert" in readyz(client), 10)
        counted = wait_for(
            lambda: REGISTRY.get_sample_value("orders_invalidator_schema_problems") == 1, 10
        )
        print(f"dropped trigger: in /readyz after {noticed:.2f} s, the gauge {counted:.2f} s later")
        assert client.get("/readyz").status_code == 200  # degraded, not unready
        db.cli(
            "INSERT INTO orders (customer_id, customer_name, customer_email, status, amount, "
            "currency, item_count) SELECT customer_id, customer_name, customer_email, status, "
            "amount, currency, item_count FROM orders ORDER BY id LIMIT 20;"
        )
        assert "repaired" in run_migrate(db, monkeypatch)
        wait_for(lambda: "trigger" not in readyz(client), 10)
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == ORDERS + 20, 20)
        assert counts_exact(db)
        consistent(client, db)
    assert noticed < 10


def test_readyz_under_the_api_role_never_claims_triggers_it_cannot_see_are_missing(
    db: Database, settings: Settings
) -> None:
    """information_schema.TRIGGERS lists triggers only to a user with TRIGGER on the table,
    which the api role (SELECT only) lacks: no trigger may be called missing for that."""
    user, password = f"api_{db.name[-8:]}", "api-pw-1"
    db.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'")
    try:
        for statement in roles.grants("api", user, db.name, "127.0.0.1"):
            db.execute(statement)
        url = db.url.replace("mysql://root@", f"mysql://{user}:{password}@")
        own = dataclasses.replace(
            settings, database_url=Settings.from_env({"ORDERS_DATABASE_URL": url}).database_url
        )
        with api(own) as client:
            body = client.get("/readyz").get_json()
        assert body["status"] == "ok", body
        assert "not checked" in body["checks"]["schema"]
    finally:
        db.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")


def test_a_cascading_foreign_key_created_later_shows_in_readyz(
    db: Database, settings: Settings
) -> None:
    with api(settings) as client:
        assert "cascad" not in readyz(client)
        db.execute(
            "CREATE TABLE customers (id BIGINT UNSIGNED PRIMARY KEY)",
            "INSERT INTO customers SELECT DISTINCT customer_id FROM orders",
            "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) "
            "REFERENCES customers (id) ON DELETE CASCADE",
        )
        body = readyz(client)
        assert "orders_customer_fk" in body
        assert '"status":"degraded"' in body


# ---- case 5: repairs that never fight an operator ----------------------------------------------


def test_a_two_step_rename_with_a_pause_is_never_fought(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.cli(
        "CREATE TABLE orders_new LIKE orders; INSERT INTO orders_new SELECT * FROM orders LIMIT 50;"
    )
    with following(settings) as running, api(settings) as client:
        warm(client, PAGES)
        waiting = event_count("repair_waiting")
        db.cli("ALTER TABLE orders RENAME TO orders_old;")
        wait_for(lambda: event_count("repair_waiting") > waiting, 10, "the repair to wait")
        time.sleep(2)  # the admin's pause between the two steps (the scenario, not a wait)
        db.cli("ALTER TABLE orders_new RENAME TO orders;")  # 1050 if orders was re-created
        assert running.alive
        run_migrate(db, monkeypatch)  # orders_new came without triggers: migrate restores them
        wait_for(lambda: client.get("/orders/1").get_json()["total_orders"] == 50, 20)
        assert counts_exact(db)
        consistent(client, db)


# ---- case 8: key columns the block arithmetic cannot hold --------------------------------------


def test_a_signed_key_column_is_refused_by_migrate_and_shown_in_readyz(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.execute("ALTER TABLE orders MODIFY id BIGINT NOT NULL AUTO_INCREMENT")
    with (
        contextlib.closing(db.connect()) as conn,
        pytest.raises(schema.UnexpectedKeyColumns, match=r"orders\.id.*signed"),
    ):
        schema.migrate(conn)
    monkeypatch.setenv("ORDERS_DATABASE_URL", db.url)
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code != 0
    assert "UNSIGNED" in result.output
    with api(settings) as client:
        assert "orders.id" in readyz(client)


def test_migrate_accepts_the_key_it_creates(db: Database) -> None:
    with connect(db_url(db)) as conn:
        schema.migrate(conn)
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        assert catalog.schema_problems(cur) == []


def db_url(db: Database) -> object:
    return Settings.from_env({"ORDERS_DATABASE_URL": db.url}).database_url
