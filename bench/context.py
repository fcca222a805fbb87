"""What one bench run shares: its own MariaDB, the shared Redis under a private prefix, the
gunicorn shape every system runs with, and how to start each system under test.

Every system (floor, peer, service and its variants) gets the same gunicorn settings, so the
ratios between them stay fair; a settings sweep changes them for all systems at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from bench import seeding
from bench.servers import VENV_BIN, BenchError, Gunicorn, MariaDB, redis_clear
from service.config import Settings
from tests.support.processes import CommandFailed
from tests.support.processes import orders_service as run_orders_service
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".run" / "bench"


HIT_PHASE_MAX_LAG = "3600"


def service_defaults() -> tuple[int, int]:
    """Workers and threads as the service would pick them (ORDERS_WORKERS/THREADS override)."""
    settings = Settings.from_env()
    return settings.workers, settings.threads


@dataclass(frozen=True)
class GunicornShape:
    """The gunicorn settings that shape the hit path; the same for every system in a run."""

    workers: int
    threads: int
    keepalive: int = 5
    worker_class: str = "gthread"

    @property
    def label(self) -> str:
        threads = f" x {self.threads} threads" if self.worker_class == "gthread" else ""
        return (
            f"{self.worker_class}, {self.workers} workers{threads}, keep-alive {self.keepalive} s"
        )

    def argv(self) -> list[str]:
        return [
            "--worker-class",
            self.worker_class,
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--keep-alive",
            str(self.keepalive),
        ]


@dataclass
class Context:
    """Everything one run shares: the database, Redis, prefixes, gunicorn shape, a scratch dir."""

    mysql: MariaDB
    database: str
    redis_url: str
    prefix: str
    shape: GunicornShape
    scratch: Path
    page_size: int = 10

    @property
    def workers(self) -> int:
        return self.shape.workers

    @property
    def threads(self) -> int:
        return self.shape.threads

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    @property
    def service_prefix(self) -> str:
        return self.prefix_of("service")

    def prefix_of(self, name: str) -> str:
        """Each service instance caches under its own prefix (``bench<pid>-svc`` for "service")."""
        return f"{self.prefix}-svc" if name == "service" else f"{self.prefix}-{name}"

    def pages_pattern(self, name: str = "service") -> str:
        """SCAN pattern of one service instance's cached pages (service/cache/keys.py)."""
        return f"{self.prefix_of(name)}:s{self.page_size}:page:*"

    @property
    def service_pages(self) -> str:
        return self.pages_pattern("service")

    @property
    def peer_prefix(self) -> str:
        return f"{self.prefix}-peer:"

    def service_env(self, database: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "ORDERS_DATABASE_URL": self.mysql.url(database or self.database),
            "ORDERS_REDIS_URL": self.redis_url,
            "ORDERS_CACHE_PREFIX": self.service_prefix,
            "ORDERS_WORKERS": str(self.workers),
            "ORDERS_THREADS": str(self.threads),
            "ORDERS_HOST": "127.0.0.1",
            "ORDERS_PAGE_SIZE": str(self.page_size),
            # The hit phases' MariaDB has no binlog, so no invalidator proves progress and every
            # entry would be refilled once it is ORDERS_CACHE_MAX_LAG old: widening the bound keeps
            # them hits while the bound's check still runs on every hit. The invalidation phase
            # runs a real invalidator with the shipped bound (bench/invalidation.py).
            "ORDERS_CACHE_MAX_LAG": HIT_PHASE_MAX_LAG,
            **extra,
        }

    def gunicorn_argv(self, app: str, port: int) -> list[str]:
        """The service's gunicorn settings (service/gunicorn_conf.py) that shape the hit path."""
        return [
            str(VENV_BIN / "gunicorn"),
            *self.shape.argv(),
            "--timeout",
            "30",
            "--bind",
            f"127.0.0.1:{port}",
            app,
        ]

    def service(
        self,
        name: str = "service",
        *,
        database: str | None = None,
        bin_dir: Path = VENV_BIN,
        cwd: Path = REPO,
        **extra: str,
    ) -> Gunicorn:
        """``orders-service serve`` as shipped, with this run's gunicorn shape.

        Workers and threads go through ORDERS_WORKERS/THREADS; keep-alive and the worker class,
        which the service's gunicorn config fixes, through GUNICORN_CMD_ARGS, which gunicorn
        reads after the config file. ``bin_dir`` and ``cwd`` select another installed revision.
        """
        port = free_port()
        metrics = Path(tempfile.mkdtemp(prefix="metrics-", dir=self.scratch))
        env = self.service_env(
            database,
            ORDERS_PORT=str(port),
            ORDERS_METRICS_DIR=str(metrics),
            ORDERS_CACHE_PREFIX=self.prefix_of(name),
            # The shipped worker class (gthread with the service's client deadline) stays unless
            # the sweep asks for another kind of worker.
            GUNICORN_CMD_ARGS=f"--keep-alive {self.shape.keepalive}"
            + (
                ""
                if self.shape.worker_class == "gthread"
                else f" --worker-class {self.shape.worker_class}"
            ),
            **extra,
        )
        return Gunicorn(
            name,
            port,
            [str(bin_dir / "orders-service"), "serve"],
            env,
            self.scratch / f"{name}.log",
            extra={"workers": str(self.workers), "metrics_dir": str(metrics)},
            cwd=cwd,
        )

    def floor(self, body: Path) -> Gunicorn:
        port = free_port()
        return Gunicorn(
            "floor",
            port,
            self.gunicorn_argv("bench.floor_app:app", port),
            {"BENCH_FLOOR_BODY": str(body)},
            self.scratch / "floor.log",
            extra={"workers": str(self.workers)},
        )

    def peer(self, database: str | None = None, name: str = "peer") -> Gunicorn:
        port = free_port()
        return Gunicorn(
            name,
            port,
            self.gunicorn_argv("bench.peer_app:app", port),
            {
                "BENCH_PEER_DATABASE_URL": self.mysql.url(
                    database or self.database, "mysql+pymysql"
                ),
                "BENCH_PEER_REDIS_URL": self.redis_url,
                "BENCH_PEER_PREFIX": self.peer_prefix,
            },
            self.scratch / f"{name}.log",
            extra={"workers": str(self.workers)},
        )

    def clear_service(self, name: str = "service") -> int:
        return redis_clear(self.redis, f"{self.prefix_of(name)}:")

    def clear_peer(self) -> int:
        return redis_clear(self.redis, self.peer_prefix)

    def clear_all(self) -> int:
        """Every key this run wrote (all its prefixes start with ``bench<pid>-``)."""
        return redis_clear(self.redis, f"{self.prefix}-")


def orders_service(*args: str, env: dict[str, str], bin_dir: Path = VENV_BIN) -> None:
    """One ``orders-service`` command through the test suite's runner; a failure is a BenchError."""
    try:
        run_orders_service(*args, env={**os.environ, **env}, binary=bin_dir / "orders-service")
    except CommandFailed as failed:
        raise BenchError(str(failed)) from None


def database_name(orders: int) -> str:
    return f"orders_bench_{orders}"


def prepare_database(ctx: Context, orders: int) -> str:
    """Create, migrate and seed (once: the seed survives in the bench's own data directory).

    Seeding bulk-loads the service's generated orders (bench/seeding.py); 10M take minutes."""
    database = database_name(orders)
    ctx.mysql.execute(
        f"CREATE DATABASE IF NOT EXISTS `{database}` "
        "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )
    env = ctx.service_env(database)
    orders_service("migrate", env=env)
    seeded = 0.0
    if not ctx.mysql.execute("SELECT 1 FROM orders LIMIT 1", database):
        seeded = seeding.load_orders(ctx.mysql, database, orders)
        t0 = time.monotonic()
        orders_service("migrate", env=env)  # restores the insert trigger, rebuilds the counts
        seeded += time.monotonic() - t0
    count = int(
        str(ctx.mysql.execute("SELECT COUNT(*) FROM orders", database)[0][0])
        if orders <= 1_000_000
        else str(
            ctx.mysql.execute("SELECT COALESCE(SUM(row_count), 0) FROM order_buckets", database)[0][
                0
            ]
        )
    )
    if count != orders:
        raise BenchError(
            f"database {database} holds {count} orders, expected {orders}: "
            f"drop it (on 127.0.0.1:{ctx.mysql.port}) and run again"
        )
    if seeded > 5:
        print(f"seeded {orders:,} orders into {database} in {seeded:.0f} s", flush=True)
    return database


def shape_from_args(args: argparse.Namespace) -> GunicornShape:
    workers, threads = service_defaults()
    return GunicornShape(
        workers=args.workers or workers,
        threads=args.threads or threads,
        keepalive=args.keepalive,
        worker_class=args.worker_class,
    )


@contextlib.contextmanager
def context(
    args: argparse.Namespace,
    database: str,
    shape: GunicornShape | None = None,
    *,
    start_mysql: bool = True,
) -> Iterator[Context]:
    """``start_mysql=False``: a phase that brings its own MariaDB (the invalidation phase) does
    not start the bench's."""
    state = Path(args.state).resolve()
    mysql = MariaDB(state / "mysql" / "data", args.mysql_port, buffer_pool=args.buffer_pool)
    if start_mysql:
        mysql.start()
    state.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=state))
    ctx = Context(
        mysql,
        database,
        args.redis_url,
        f"bench{os.getpid()}",
        shape or shape_from_args(args),
        scratch,
    )
    try:
        ctx.clear_all()
        yield ctx
    except BaseException:
        print(f"bench: server logs kept in {scratch}", file=sys.stderr)
        raise
    else:
        shutil.rmtree(scratch, ignore_errors=True)  # the service's request log alone is ~200 MB
    finally:
        with contextlib.suppress(Exception):
            ctx.clear_all()
        if not getattr(args, "keep_mysql", False):
            mysql.stop()
