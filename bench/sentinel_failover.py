"""Redis Sentinel failovers from the outside: time to the first correct page, invalidations
lost, stale pages served, and what going through Sentinel costs a cache hit.

Everything is the bench's own: a throwaway MariaDB with the binlog on, a primary and a replica
with three Sentinels (tests/support/redis_sentinel.py), `orders-service serve` and `invalidate`
asking the Sentinels. Each failover is the worst case: the replica's link is held, an UPDATE is
invalidated on the primary only (its checkpoint passed the commit), then the primary is killed
and the Sentinels promote the replica; the killed server then rejoins as the new replica.

- ``failover_to_correct_s``: from the kill until the updated page is served right.
- ``lost_invalidations``: failovers after which some page still differed from MySQL 20 s later.
- ``stale_answers``: answers that served the old row as a HIT later than ORDERS_CACHE_MAX_LAG
  (plus 0.5 s) after the commit.
- Hit throughput and server CPU per hit with the near cache off (every hit reads Redis), one
  server's URL and the Sentinels' URL side by side (interleaved rounds), as a ratio.

``python -m bench sentinel-failover`` runs only this phase; ``make bench`` runs it with the rest.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import phases
from bench.servers import VENV_BIN, Gunicorn
from tests.support.processes import orders_cli, service_env, start_invalidator, start_service
from tests.support.redis_sentinel import MASTER, SentinelGroup, SentinelServer
from tests.support.servers import MariaDBServer, RedisServer, free_port
from tests.support.waiting import wait_for

ORDERS = 2000
PAGE_SIZE = 10
PAGES = 20  # the pages warmed and checked each round
MAX_LAG = 2.0
PREFIX = "benchfailover"


def _get(base: str, page: int) -> tuple[str, str]:
    """(X-Cache, body) of one GET."""
    with urllib.request.urlopen(f"{base}/orders/{page}", timeout=5) as resp:  # noqa: S310
        return resp.headers.get("X-Cache", ""), resp.read().decode()


def _truth(db: Any) -> dict[int, list[str]]:
    """Every checked page's customer names, from one MySQL read."""
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT customer_name FROM orders ORDER BY id LIMIT %s", (PAGES * PAGE_SIZE,))
        names = [str(row[0]) for row in cur.fetchall()]
    return {p: names[(p - 1) * PAGE_SIZE : p * PAGE_SIZE] for p in range(1, PAGES + 1)}


def _agrees(base: str, db: Any) -> bool:
    truth = _truth(db)
    for page, names in truth.items():
        _, body = _get(base, page)
        served = [order["customer"]["name"] for order in json.loads(body)["orders"]]
        if served != names:
            return False
    return True


@contextlib.contextmanager
def _stack(workdir: Path) -> Iterator[tuple[str, Any, SentinelGroup, dict[str, str]]]:
    with MariaDBServer.create() as mariadb, SentinelGroup.create() as group:
        database = mariadb.create_database("orders_failover")
        port, metrics_port = free_port(), free_port()
        env = service_env(
            database_url=database.url,
            redis_url=group.sentinel_url,
            prefix=PREFIX,
            port=port,
            metrics_dir=workdir / "metrics",
            extra={
                "ORDERS_PAGE_SIZE": str(PAGE_SIZE),
                "ORDERS_CACHE_MAX_LAG": str(MAX_LAG),
                "ORDERS_INVALIDATOR_METRICS_PORT": str(metrics_port),
                "ORDERS_LOG_LEVEL": "warning",
            },
        )
        (workdir / "metrics").mkdir()
        orders_cli(env, "migrate")
        orders_cli(env, "seed", "--orders", str(ORDERS))
        invalidator = start_invalidator(env, workdir / "invalidate.log")
        web = start_service(env, workdir / "serve.log")
        try:
            yield f"http://127.0.0.1:{port}", database, group, env
        finally:
            web.kill()
            invalidator.kill()


def _one_failover(base: str, db: Any, group: SentinelGroup, round_no: int) -> dict[str, Any]:
    key = f"{PREFIX}:s{PAGE_SIZE}:"
    replica, primary = group.client(group.replica), group.client(group.primary)
    for page in range(1, PAGES + 1):
        _get(base, page)
    wait_for(lambda: replica.get(key + "checkpoint"), 30, "a checkpoint on the replica")
    wait_for(group.replica_in_sync, 30, "the replica in sync")
    page, order_id, marker = 3, 21 + round_no % PAGE_SIZE, f"failover-{round_no}"
    group.hold_replica_link()
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("UPDATE orders SET customer_name = %s WHERE id = %s", (marker, order_id))
    committed = time.monotonic()
    seconds, micros = primary.time()
    at_ms = seconds * 1000 + micros // 1000
    wait_for(lambda: int(primary.get(key + "checkpoint") or 0) > at_ms, 30, "the checkpoint")
    answers: list[tuple[float, str, bool]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                cache, body = _get(base, page)
                answers.append((time.monotonic(), cache, marker in body))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    group.kill_primary()
    killed = time.monotonic()
    try:
        promoted = group.wait_sentinel_promotion()
        wait_for(lambda: marker in _get(base, page)[1], 60, "the updated page")
        correct = time.monotonic() - killed
        try:
            wait_for(lambda: _agrees(base, db), 20, "every page to agree with MySQL")
            lost = 0
        except TimeoutError:
            lost = 1
    finally:
        stop.set()
        watcher.join(10)
    stale = sum(
        1
        for at, cache, fresh in answers
        if cache == "HIT" and not fresh and at > committed + MAX_LAG + 0.5
    )
    group.rejoin()
    return {"promote_s": promoted, "to_correct_s": correct, "lost": lost, "stale": stale}


@contextlib.contextmanager
def _watched_redis() -> Iterator[tuple[str, str]]:
    """One Redis and three Sentinels watching it directly (no forwarder in the way): its own
    URL and the Sentinels' URL, for the throughput comparison."""
    with RedisServer.create() as server:
        sentinels = [
            SentinelServer(Path(tempfile.mkdtemp(prefix="sentinel-")), free_port(), server.port)
            for _ in range(3)
        ]
        try:
            for sentinel in sentinels:
                sentinel.start()
            hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
            yield f"redis://127.0.0.1:{server.port}/0", f"redis+sentinel://{hosts}/{MASTER}"
        finally:
            for sentinel in sentinels:
                sentinel.close()


def _throughput(workdir: Path, env: dict[str, str], plan: phases.Plan) -> dict[str, Any]:
    """Hits through one server's URL and through the Sentinels' (the same server), near cache
    off so every hit reads Redis."""
    with _watched_redis() as (direct, through_sentinels):
        return _compare(workdir, env, plan, direct, through_sentinels)


def _compare(
    workdir: Path, env: dict[str, str], plan: phases.Plan, direct: str, through_sentinels: str
) -> dict[str, Any]:
    systems = []
    for name, url in (("one_server", direct), ("sentinel", through_sentinels)):
        port = free_port()
        (workdir / f"metrics-{name}").mkdir()
        systems.append(
            Gunicorn(
                name,
                port,
                [str(VENV_BIN / "orders-service"), "serve"],
                {
                    **env,
                    "ORDERS_REDIS_URL": url,
                    "ORDERS_PORT": str(port),
                    "ORDERS_NEAR_CACHE": "false",
                    "ORDERS_CACHE_MAX_LAG": "3600",
                    "ORDERS_METRICS_DIR": str(workdir / f"metrics-{name}"),
                },
                workdir / f"{name}.log",
                extra={"workers": env["ORDERS_WORKERS"]},
            )
        )
    try:
        for system in systems:
            system.start(ready_path="/healthz")
            phases.warm(system, plan.hot_pages)
        measured = phases.closed_loop(systems, plan)
    finally:
        for system in systems:
            system.stop()
    one, sentinel = measured["one_server"], measured["sentinel"]
    return {
        **measured,
        "rps_ratio": round(sentinel["rps"] / max(1e-9, one["rps"]), 3),
        "cpu_per_hit_ratio": round(
            sentinel["cpu_us_per_request"] / max(1e-9, one["cpu_us_per_request"]), 3
        ),
    }


def run(plan: phases.Plan, failovers: int) -> dict[str, Any]:
    """``failovers`` failovers, then the hit-throughput comparison; plain dicts for the report."""
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as scratch:
        workdir = Path(scratch)
        with _stack(workdir) as (base, db, group, env):
            rounds = [_one_failover(base, db, group, i) for i in range(failovers)]
            throughput = _throughput(workdir, env, plan)
    to_correct = [r["to_correct_s"] for r in rounds]
    return {
        "failovers": failovers,
        "promotion_s_median": round(statistics.median(r["promote_s"] for r in rounds), 2),
        "failover_to_correct_s_median": round(statistics.median(to_correct), 2),
        "failover_to_correct_s_max": round(max(to_correct), 2),
        "lost_invalidations": sum(r["lost"] for r in rounds),
        "stale_answers": sum(r["stale"] for r in rounds),
        "hit_throughput": throughput,
    }


def markdown(results: dict[str, Any]) -> str:
    hits = results["hit_throughput"]
    one, sentinel = hits["one_server"], hits["sentinel"]
    rows = [
        ("failovers (primary killed, link held, Sentinel promotes)", results["failovers"]),
        ("promotion by the Sentinels, median", f"{results['promotion_s_median']} s"),
        (
            "kill to first correct page, median / max",
            f"{results['failover_to_correct_s_median']} s / "
            f"{results['failover_to_correct_s_max']} s",
        ),
        ("invalidations lost (target 0)", results["lost_invalidations"]),
        ("stale HITs past the bound (target 0)", results["stale_answers"]),
        (
            "hit throughput, Sentinel / one server (near cache off)",
            f"{hits['rps_ratio']} ({sentinel['rps']:.0f} / {one['rps']:.0f} req/s)",
        ),
        (
            "CPU per hit, Sentinel / one server",
            f"{hits['cpu_per_hit_ratio']} ({sentinel['cpu_us_per_request']} / "
            f"{one['cpu_us_per_request']} us)",
        ),
    ]
    table = [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(
        ["## Redis Sentinel failover", "", "| Figure | Value |", "| --- | --- |", *table, ""]
    )
