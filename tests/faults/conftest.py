"""A whole deployment per test: throwaway binlog MariaDB + Redis, and the real service processes.

Each test gets its own `Stack`: a private `mariadbd` (binlog on) and `redis-server` on spare ports,
`orders-service migrate` and `seed` run against them, then `orders-service serve` (gunicorn, 2
workers) and `orders-service invalidate` as subprocesses configured only by ORDERS_* variables.
Everything is killed at teardown, also when the test fails, and at interpreter exit as a last
resort. The shared servers on 3306/6379 are never touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.support import processes
from tests.support.fixtures import ThrowawayServers
from tests.support.processes import ORDERS_SERVICE, clean_env, orders_service
from tests.support.servers import Database, HungRedis, MariaDBServer, RedisServer, free_port
from tests.support.waiting import wait_for as wait_until

PAGE_SIZE = 10
CACHE_PREFIX = "faults"
REPO = Path(__file__).resolve().parents[2]
REPORT_PATH = REPO / "build" / "faults-report.json"

# ---------------------------------------------------------------------------------------------
# Service processes
# ---------------------------------------------------------------------------------------------


def _cli() -> str:
    if not ORDERS_SERVICE.exists():
        pytest.fail(
            f"{ORDERS_SERVICE} is missing: run `make install` (or `make test-faults`) first"
        )
    return str(ORDERS_SERVICE)


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """One short `orders-service` command (migrate, seed); fails the test with its output."""
    return orders_service(*args, env=env, timeout=timeout).stdout


class ServiceProcess(processes.ServiceProcess):
    """A long-running `orders-service` subcommand (the suite's launcher), logging to
    ``log_dir/<name>.log``, started by ``start()``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        super().__init__([_cli(), *args], env, log_dir / f"{name}.log", start=False)
        self.name = name


# ---------------------------------------------------------------------------------------------
# The stack
# ---------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """One deployment: servers, service processes and the clients tests speak through."""

    db: Database
    redis_server: RedisServer | HungRedis
    env: dict[str, str]
    web: ServiceProcess
    invalidator: ServiceProcess | None
    http_port: int
    invalidator_port: int
    _redis: redis.Redis | None = field(default=None, repr=False)

    # ---- HTTP --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, page: int, timeout: float = 10.0) -> requests.Response:
        """A GET on a fresh connection, so successive calls spread over both workers."""
        return requests.get(f"{self.base_url}/orders/{page}", timeout=timeout)

    def page_rows(self, page: int) -> list[tuple[int, str, str, str]]:
        response = self.get(page)
        assert response.status_code == 200, (page, response.status_code, response.text[:300])
        return [order_key(o) for o in response.json()["orders"]]

    # ---- MySQL -------------------------------------------------------------------------------
    @property
    def mariadb(self) -> MariaDBServer:
        return self.db.server

    def sql(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.db.connect()) as conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())

    def sql_page(self, page: int) -> list[tuple[int, str, str, str]]:
        """The page as MySQL has it now (id order, PAGE_SIZE rows)."""
        rows = self.sql(
            "SELECT id, customer_name, status, amount FROM orders ORDER BY id LIMIT %s OFFSET %s",
            (PAGE_SIZE, (page - 1) * PAGE_SIZE),
        )
        return [(int(i), str(n), str(s), str(a)) for i, n, s, a in rows]

    def sql_pages(self, pages: range) -> dict[int, list[tuple[int, str, str, str]]]:
        """Several consecutive pages as MySQL has them now, in one query (one snapshot)."""
        rows = self.sql(
            "SELECT id, customer_name, status, amount FROM orders ORDER BY id LIMIT %s OFFSET %s",
            (len(pages) * PAGE_SIZE, (pages.start - 1) * PAGE_SIZE),
        )
        keyed = [(int(i), str(n), str(s), str(a)) for i, n, s, a in rows]
        return {
            page: keyed[(page - pages.start) * PAGE_SIZE : (page - pages.start + 1) * PAGE_SIZE]
            for page in pages
        }

    def page_of(self, order_id: int) -> int:
        (rank,) = self.sql("SELECT COUNT(*) FROM orders WHERE id < %s", (order_id,))[0]
        return int(rank) // PAGE_SIZE + 1

    def total_pages(self) -> int:
        (count,) = self.sql("SELECT COUNT(*) FROM orders")[0]
        return max(1, -(-int(count) // PAGE_SIZE))

    # ---- Redis -------------------------------------------------------------------------------
    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis(
                host="127.0.0.1", port=self.redis_server.port, socket_timeout=2
            )
        return self._redis

    def key(self, name: str) -> str:
        return f"{CACHE_PREFIX}:s{PAGE_SIZE}:{name}"

    # ---- processes ---------------------------------------------------------------------------
    def start_web(self) -> None:
        self.web.start()
        wait_until(self._web_ready, 60, f"the web server on :{self.http_port}\n{self.web.tail()}")

    def _web_ready(self) -> bool:
        if not self.web.running:
            pytest.fail(f"orders-service serve exited:\n{self.web.tail()}")
        return requests.get(f"{self.base_url}/healthz", timeout=1).status_code == 200

    def start_invalidator(self) -> None:
        """Start it and wait until it follows the binlog (its position is in Redis)."""
        assert self.invalidator is not None
        self.invalidator.start()

        def following() -> bool:
            assert self.invalidator is not None
            if not self.invalidator.running:
                pytest.fail(f"orders-service invalidate exited:\n{self.invalidator.tail()}")
            healthy = requests.get(
                f"http://127.0.0.1:{self.invalidator_port}/healthz", timeout=1
            ).ok
            return healthy and bool(self.redis.exists(self.key("binlog")))

        wait_until(following, 60, f"the invalidator to follow\n{self.invalidator.tail()}")

    def close(self) -> None:
        for process in (self.invalidator, self.web):
            if process is not None:
                process.kill()
        if self._redis is not None:
            self._redis.close()


def order_key(order: dict[str, Any]) -> tuple[int, str, str, str]:
    """What a test compares of an order: id, customer name, status, amount."""
    return (
        int(order["id"]),
        str(order["customer"]["name"]),
        str(order["status"]),
        str(order["total"]["amount"]),
    )


@pytest.fixture
def stack_factory(throwaway: ThrowawayServers, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """``make(orders=..., hung_redis=False, invalidator=True, **env)`` builds a running Stack."""
    stacks: list[Stack] = []

    def make(
        *,
        orders: int = 3000,
        hung_redis: bool = False,
        invalidator: bool = True,
        database: Database | None = None,
        **extra: str,
    ) -> Stack:
        """``database``: an existing (empty) one, e.g. a replication set's endpoint's."""
        if database is None:
            mariadb = throwaway.mariadb(binlog=True)
            # Created here: `orders-service migrate` waits 60 s on "Unknown database" instead
            # of creating it (see the report of this suite); a provisioned one is the usual case.
            database = mariadb.create_database("orders_faults")
        redis_server: RedisServer | HungRedis = (
            throwaway.hung_redis() if hung_redis else throwaway.redis()
        )
        http_port, invalidator_port = free_port(), free_port()
        metrics_dir = tmp_path / f"metrics-{http_port}"
        metrics_dir.mkdir()
        env = {
            **clean_env(),
            "ORDERS_DATABASE_URL": database.url,
            "ORDERS_REDIS_URL": redis_server.url,
            "ORDERS_CACHE_PREFIX": CACHE_PREFIX,
            "ORDERS_PAGE_SIZE": str(PAGE_SIZE),
            "ORDERS_HOST": "127.0.0.1",
            "ORDERS_PORT": str(http_port),
            "ORDERS_WORKERS": "2",
            "ORDERS_THREADS": "4",
            "ORDERS_SHUTDOWN_DELAY": "0",
            "ORDERS_METRICS_DIR": str(metrics_dir),
            "ORDERS_INVALIDATOR_METRICS_PORT": str(invalidator_port),
            "ORDERS_LOG_FORMAT": "json",
            "ORDERS_LOG_LEVEL": "warning",
            **extra,
        }
        run_cli(env, "migrate")
        run_cli(env, "seed", "--orders", str(orders))
        stack = Stack(
            db=database,
            redis_server=redis_server,
            env=env,
            web=ServiceProcess(f"serve-{http_port}", ["serve"], env, tmp_path),
            invalidator=(
                ServiceProcess(f"invalidate-{http_port}", ["invalidate"], env, tmp_path)
                if invalidator
                else None
            ),
            http_port=http_port,
            invalidator_port=invalidator_port,
        )
        stacks.append(stack)
        if invalidator:
            stack.start_invalidator()
        stack.start_web()
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.close()


# ---------------------------------------------------------------------------------------------
# Figures for the CI log: build/faults-report.json, merged across tests
# ---------------------------------------------------------------------------------------------

_REPORT_LOCK = threading.Lock()
# Each run's figures only (a section of an earlier run must not pass for this one's): the report
# starts afresh when its run file names another run. xdist's workers share one run id.
REPORT_RUN = REPORT_PATH.with_suffix(".run")
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Callable[[str, dict[str, Any]], None]:
    """``report(section, figures)``: written to build/faults-report.json, to the junit report
    (record_property) and to stdout (shown with ``-rA`` or ``-s``)."""

    def write(section: str, figures: dict[str, Any]) -> None:
        # Several xdist workers may write at once: a thread lock, then an flock on the run file
        # beside the report, which names the run whose figures the report holds.
        REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
        with _REPORT_LOCK, REPORT_RUN.open("a+") as run:
            fcntl.flock(run, fcntl.LOCK_EX)
            run.seek(0)
            this_run = run.read() == _RUN_ID
            if not this_run:
                run.truncate(0)
                run.write(_RUN_ID)
                run.flush()
            current: dict[str, Any] = {}
            if this_run and REPORT_PATH.exists():
                with contextlib.suppress(ValueError):
                    current = json.loads(REPORT_PATH.read_text())
            current[section] = figures
            REPORT_PATH.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        for name, value in figures.items():
            record_property(f"{section}.{name}", value)
        print(f"[faults] {section}: {json.dumps(figures, sort_keys=True)}")

    return write


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 200 samples is the 198th)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]
