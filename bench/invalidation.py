"""Invalidation from the outside: how long a committed write takes to show through the API.

The bench starts a throwaway MariaDB with the binlog on (tests/support/servers.py, the same
settings the invalidator requires in production), the service and ``orders-service invalidate``
against it. Nothing here looks inside the invalidator: a change is "visible" when a GET through
the service returns the new bytes, so the figures hold for any invalidator design.

- Transaction size: one UPDATE of N rows in one transaction; seconds from COMMIT returning until
  the first and the last page it touched show the change, and N over the latter (rows/s).
- Write rate: ``writers`` connections, each committing UPDATEs of ``rows_per_transaction``
  rows of its own id range on a fixed schedule for a few seconds, plus a canary transaction (one
  row on page 1, untouched by the stream) every 0.2 s; a canary's lag is the time until page 1
  shows it, i.e. how far the invalidator is behind. The rate reported is what was committed
  (changed rows, from the affected-row counts), which on a shared machine can fall short of the
  schedule offered; the sustained rate is the highest committed rate with every canary < 1 s.

``python -m bench invalidation`` (``make bench-invalidation``) runs only this phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from bench import phases
from bench.context import Context, free_port, orders_service
from bench.servers import VENV_BIN, BenchError, Gunicorn
from service.config import SETTINGS

CANARY_ID = 1  # on page 1; the write stream starts at STREAM_FIRST_ID, so never touches it
STREAM_FIRST_ID = 11
CANARY_EVERY = 0.2
POLL_EVERY = 0.005
_CANARY = re.compile(rb"benchmark-c(\d+)")


SHIPPED_MAX_LAG = next(s.default for s in SETTINGS if s.field == "cache_max_lag")


def pages_of(first_id: int, last_id: int, page_size: int) -> tuple[int, int]:
    """First and last page holding ids ``first_id..last_id`` (ids are 1..N, ascending pages)."""
    return (first_id - 1) // page_size + 1, (last_id - 1) // page_size + 1


def lag_summary(
    offered: float, rows: int, writing_s: float, lags: list[float | None], drain_s: float | None
) -> dict[str, Any]:
    """One write-rate point: achieved rate and canary lags (None: not visible in time)."""
    seen = sorted(x for x in lags if x is not None)
    return {
        "offered_rows_per_s": offered,
        "achieved_rows_per_s": round(rows / writing_s, 1) if writing_s else 0.0,
        "rows": rows,
        "canaries": len(lags),
        "canaries_not_visible": len(lags) - len(seen),
        "lag_p50_s": round(statistics.median(seen), 3) if seen else None,
        "lag_max_s": None if len(seen) < len(lags) or not seen else round(seen[-1], 3),
        "drain_s": None if drain_s is None else round(drain_s, 3),
    }


def sustained_rate(points: list[dict[str, Any]], max_lag: float = 1.0) -> float | None:
    """The highest rate of changed rows actually committed (not offered: on a shared machine
    the writers fall short of a high schedule) at a point where every canary became visible
    within ``max_lag`` seconds; None if no point qualifies."""
    good = [
        p["achieved_rows_per_s"]
        for p in points
        if p["lag_max_s"] is not None and p["lag_max_s"] < max_lag
    ]
    return max(good) if good else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _body(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback only
        return bytes(resp.read())


@dataclass
class _Rig:
    ctx: Context
    service: Gunicorn
    db_url: dict[str, Any]
    page_size: int
    orders: int
    seq: int = 0
    log: list[str] = field(default_factory=list)

    def connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(**self.db_url, autocommit=False)

    def marker(self, kind: str) -> str:
        self.seq += 1
        return f"benchmark-{kind}{self.seq}"

    def page_url(self, page: int) -> str:
        return f"{self.service.base_url}/orders/{page}"

    def wait_visible(
        self, pages: list[int], marker: bytes, since: float, timeout: float
    ) -> dict[int, float | None]:
        """Poll each page until its body carries ``marker``; seconds after ``since`` per page."""
        seen: dict[int, float | None] = dict.fromkeys(pages)
        deadline = since + timeout
        while any(v is None for v in seen.values()) and time.monotonic() < deadline:
            for page in pages:
                if seen[page] is None and marker in _body(self.page_url(page)):
                    seen[page] = time.monotonic() - since
            time.sleep(POLL_EVERY)
        return seen


def _update(conn: pymysql.connections.Connection[Any], first: int, last: int, name: str) -> float:
    """One transaction changing rows ``first..last``; the monotonic time COMMIT returned."""
    return _update_counted(conn, first, last, name)[0]


def _update_counted(
    conn: pymysql.connections.Connection[Any], first: int, last: int, name: str
) -> tuple[float, int]:
    """The same, and the rows it changed (MySQL's affected rows: rows whose value changed)."""
    with conn.cursor() as cur:
        changed = cur.execute(
            "UPDATE orders SET customer_name = %s WHERE id BETWEEN %s AND %s", (name, first, last)
        )
    conn.commit()
    return time.monotonic(), int(changed)


def transaction_sizes(rig: _Rig, plan: phases.Plan) -> list[dict[str, Any]]:
    points = []
    with contextlib.closing(rig.connect()) as conn:
        for rows in plan.transaction_sizes:
            first_id, last_id = STREAM_FIRST_ID, STREAM_FIRST_ID + rows - 1
            first_page, last_page = pages_of(first_id, last_id, rig.page_size)
            for page in (first_page, last_page):  # cached in Redis and near caches
                for _ in range(3):
                    _body(rig.page_url(page))
            marker = rig.marker("t")
            began = time.monotonic()
            committed = _update(conn, first_id, last_id, marker)
            seen = rig.wait_visible(
                [first_page, last_page], marker.encode(), committed, plan.visible_timeout
            )
            last_s = seen[last_page]
            points.append(
                {
                    "rows": rows,
                    "pages": last_page - first_page + 1,
                    "update_commit_s": round(committed - began, 3),
                    "first_page_visible_s": _rounded(seen[first_page]),
                    "last_page_visible_s": None if last_s is None else round(last_s, 3),
                    "rows_per_s": round(rows / last_s, 1) if last_s else None,
                }
            )
            print(f"  transaction of {rows:,} rows: {points[-1]}", flush=True)
    return points


@dataclass
class _Canaries:
    """Watches page 1 for the canary row's newest name: the lag of each canary commit."""

    rig: _Rig
    commits: dict[int, float]
    lags: dict[int, float]
    errors: list[BaseException]

    def poll(self, stop: threading.Event, poll_stop: threading.Event) -> None:
        """Until every commit is seen after ``stop``, or ``poll_stop``; errors go to ``errors``."""
        try:
            while not self._done(stop) and not poll_stop.is_set():
                match = _CANARY.search(_body(self.rig.page_url(1)))
                if match:
                    self._saw(int(match[1]), time.monotonic())
                time.sleep(POLL_EVERY)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            self.errors.append(exc)

    def _done(self, stop: threading.Event) -> bool:
        return stop.is_set() and len(self.lags) == len(self.commits)

    def _saw(self, upto: int, now: float) -> None:
        for k, at in list(self.commits.items()):
            if k <= upto and k not in self.lags:
                self.lags[k] = now - at


def write_rate(rig: _Rig, rate: int, plan: phases.Plan) -> dict[str, Any]:
    """``rate`` rows/s for ``plan.write_seconds``, canaries every CANARY_EVERY s."""
    batch = plan.rows_per_transaction
    writers = max(1, plan.writers)
    interval = batch * writers / rate  # each writer's share of the schedule
    # Each writer updates its own id range, so writers never wait on each other's row locks.
    share = (rig.orders - STREAM_FIRST_ID + 1) // writers
    span = max(1, share - batch)
    stop = threading.Event()
    written = [0] * writers
    errors: list[BaseException] = []
    last_commit = [0.0] * writers
    tag = rig.marker("w")  # a new name per point, so every UPDATE changes every row it matches
    started = time.monotonic()

    def writer(index: int) -> None:
        try:
            with contextlib.closing(rig.connect()) as conn:
                # Commits of the writers interleave evenly instead of arriving together.
                next_at, offset, seq = started + interval * index / writers, 0, 0
                base = STREAM_FIRST_ID + index * share
                while not stop.is_set():
                    delay = next_at - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        break
                    seq += 1
                    first = base + offset
                    last_commit[index], changed = _update_counted(
                        conn, first, first + batch - 1, f"{tag}-{index}-{seq}"
                    )
                    written[index] += changed
                    offset = (offset + batch) % span
                    next_at += interval
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)
            stop.set()

    commits: dict[int, float] = {}
    lags: dict[int, float] = {}
    poll_stop = threading.Event()
    canaries = _Canaries(rig, commits, lags, errors)
    workers = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(writers)]
    poller = threading.Thread(target=canaries.poll, args=(stop, poll_stop), daemon=True)
    threads = [poller, *workers]
    for t in threads:
        t.start()
    k = 0
    with contextlib.closing(rig.connect()) as conn:
        while time.monotonic() - started < plan.write_seconds and not stop.is_set():
            k += 1
            at = _update(conn, CANARY_ID, CANARY_ID, f"benchmark-c{k}")
            commits[k] = at
            stop.wait(CANARY_EVERY)
    stop.set()
    stopped = time.monotonic()
    for t in workers:
        t.join(30)
    ended = time.monotonic()
    # Rows committed over the time until the writers were told to stop or, if later, the last
    # commit (a transaction in flight when the clock ran out counts, and so does its time).
    writing_s = max([*last_commit, stopped]) - started
    deadline = ended + plan.visible_timeout
    while len(lags) < len(commits) and time.monotonic() < deadline and not errors:
        time.sleep(0.01)
    poll_stop.set()
    threads[0].join(30)
    if errors:
        raise BenchError(f"write-rate phase failed: {errors[0]!r}")
    drain = None
    if len(lags) == len(commits) and commits:
        drain = max(0.0, commits[max(commits)] + lags[max(commits)] - ended)
    point = lag_summary(
        float(rate), sum(written), writing_s, [lags.get(i) for i in sorted(commits)], drain
    )
    point["writers"] = writers
    print(f"  {rate:,} rows/s offered: {point}", flush=True)
    return point


def _profiled(rig: _Rig, rate: int, plan: phases.Plan, pid: int, raw: Path) -> dict[str, Any]:
    """``write_rate`` with py-spy recording the invalidator (every thread, idle ones left out)."""
    spy = subprocess.Popen(
        [
            *(str(VENV_BIN / "py-spy"), "record", "--pid", str(pid), "--rate", "200"),
            *("--duration", str(max(1, int(plan.write_seconds))), "--format", "raw"),
            *("--output", str(raw), "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    cpu_before = _cpu_seconds(pid)
    point = write_rate(rig, rate, plan)
    point["invalidator_cpu_s"] = round(_cpu_seconds(pid) - cpu_before, 2)
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0:
        print(f"  py-spy failed: {err.decode(errors='replace')[-400:]}", flush=True)
    return point


def _cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run(ctx: Context, plan: phases.Plan, profile: Path | None = None) -> dict[str, Any]:
    """The whole phase on its own throwaway binlog MariaDB; everything stopped afterwards.
    ``profile``: py-spy's raw stacks of the invalidator at the highest write rate go there."""
    from tests.support.servers import MariaDBServer  # the project's throwaway servers

    server = MariaDBServer.create(
        extra_args=(
            "--innodb-buffer-pool-size=512M",
            "--innodb-log-file-size=256M",
            "--innodb-log-buffer-size=64M",
            "--max-binlog-size=1G",
        )
    )
    invalidator: subprocess.Popen[bytes] | None = None
    service: Gunicorn | None = None
    try:
        database = "orders_invalidation"
        server.create_database(database)
        url = server.database_url(database)
        env = ctx.service_env(
            ORDERS_DATABASE_URL=url,
            ORDERS_CACHE_PREFIX=ctx.prefix_of("inval"),
            ORDERS_CACHE_MAX_LAG=SHIPPED_MAX_LAG,
        )
        t0 = time.monotonic()
        orders_service("migrate", env=env)
        orders_service("seed", "--orders", str(plan.invalidation_orders), env=env)
        seed_s = time.monotonic() - t0
        metrics_port = free_port()
        log = ctx.scratch / "invalidator.log"
        with log.open("ab") as out:
            invalidator = subprocess.Popen(
                [str(VENV_BIN / "orders-service"), "invalidate"],
                env={
                    **os.environ,
                    **env,
                    "ORDERS_INVALIDATOR_METRICS_PORT": str(metrics_port),
                    "ORDERS_INVALIDATOR_SERVER_ID": str(10_000 + os.getpid() % 50_000),
                },
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = ctx.service(
            "inval", ORDERS_DATABASE_URL=url, ORDERS_CACHE_MAX_LAG=SHIPPED_MAX_LAG
        )
        service.start(ready_path="/healthz")
        rig = _Rig(
            ctx,
            service,
            {**server.connection_settings(), "database": database, "charset": "utf8mb4"},
            ctx.page_size,
            plan.invalidation_orders,
        )
        # the invalidator must be following before anything is measured: one canary end to end
        _body(rig.page_url(1))
        with contextlib.closing(rig.connect()) as conn:
            marker = rig.marker("c")
            committed = _update(conn, CANARY_ID, CANARY_ID, marker)
        first = rig.wait_visible([1], marker.encode(), committed, max(60.0, plan.visible_timeout))
        if first[1] is None:
            code = invalidator.poll()
            raise BenchError(
                f"the invalidator applied no change within 60 s (exit code {code}); see {log}"
            )
        sizes = transaction_sizes(rig, plan)
        rates = []
        for rate in plan.write_rates:
            cpu_before = _cpu_seconds(invalidator.pid)
            if profile is not None and rate == max(plan.write_rates):
                rates.append(_profiled(rig, rate, plan, invalidator.pid, profile))
            else:
                rates.append(write_rate(rig, rate, plan))
            # the invalidator's CPU over the point, writes and drain (1.0 = one core busy)
            rates[-1]["invalidator_cpu_s"] = round(_cpu_seconds(invalidator.pid) - cpu_before, 2)
        return {
            "orders": plan.invalidation_orders,
            "seed_s": round(seed_s, 1),
            "first_change_visible_s": round(first[1], 3),
            "rows_per_transaction": plan.rows_per_transaction,
            "transaction_sizes": sizes,
            "write_rates": rates,
            "sustained_rows_per_s_under_1s_lag": sustained_rate(rates),
        }
    finally:
        if invalidator is not None and invalidator.poll() is None:
            invalidator.send_signal(signal.SIGTERM)
            try:
                invalidator.wait(30)
            except subprocess.TimeoutExpired:
                invalidator.kill()
                invalidator.wait()
        if service is not None:
            service.stop()
        ctx.clear_service("inval")
        server.close()


def markdown(results: dict[str, Any]) -> str:
    """``python -m bench invalidation``'s report: the targets, then the phase's tables."""
    from bench import curves_report, targets

    m = results["machine"]
    rows = targets.invalidation_targets(results)
    lines = [
        "# Invalidation results",
        "",
        f"Measured {m['date']} on {m['cpus']} CPUs ({m['cpu_model']}); 1-minute load average "
        f"{m['loadavg_before'][0]:.1f} before and {m['loadavg_after'][0]:.1f} after the run. "
        "`make bench-invalidation` (`make bench` runs the same phase).",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        *[f"| {t['target']} | {t['shown']} | {targets.verdict(t['met'])} |" for t in rows],
        "",
        *curves_report.invalidation_section(results["invalidation"]),
    ]
    follower = results.get("follower_throughput")
    if follower:
        lines += [
            "## The follower alone (`python -m bench.follower_throughput`, same make target)",
            "",
            f"One 60,000-row INSERT (each row its own event: the counting trigger writes "
            f"order_buckets per row): the follower read {follower['follower_rows_per_s']:,} "
            f"rows/s, the library's full decoding {follower['library_rows_per_s']:,} "
            f"({follower['follower_vs_library']:.1f}x); with the invalidator running, the "
            f"totals in Redis showed the rows {follower['txn_visible_s']:.3f} s after COMMIT "
            f"and the position passed it after {follower['txn_position_saved_s']:.3f} s. Ten "
            f"10,000-row INSERTs back to back: {follower['sustained_rows_per_s']:,} rows/s "
            f"from the first COMMIT to the last one applied. Load average "
            f"{follower['load_average'][0]} before, {follower['load_average'][1]} after.",
            "",
        ]
    return "\n".join(lines)


def plan_from_args(args: Any) -> phases.Plan:
    """The shipped plan with ``--write-rates``, ``--writers``, ``--rows-per-transaction``."""
    plan = phases.Plan()
    if getattr(args, "write_rates", None):
        plan = dataclasses.replace(plan, write_rates=tuple(args.write_rates))
    if getattr(args, "writers", 0):
        plan = dataclasses.replace(plan, writers=args.writers)
    if getattr(args, "rows_per_transaction", 0):
        plan = dataclasses.replace(plan, rows_per_transaction=args.rows_per_transaction)
    return plan


def standalone(args: Any, plan: phases.Plan) -> dict[str, Any]:
    """Only this phase (``python -m bench invalidation``): no bench MariaDB, no hit phases."""
    from bench import report
    from bench.context import context

    profile = None
    if getattr(args, "profile_invalidator", False):
        profile = Path(args.out) / "profile-invalidator.collapsed"
        profile.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    with context(args, "orders_invalidation", start_mysql=False) as ctx:
        inv = run(ctx, plan, profile)
    results: dict[str, Any] = {
        "machine": {
            **report.machine(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(os.getloadavg()),
        },
        "plan": dataclasses.asdict(plan),
        "invalidation": inv,
    }
    follower = Path(args.out) / "follower-throughput.json"
    if follower.exists() and time.time() - follower.stat().st_mtime < 3600:
        results["follower_throughput"] = json.loads(follower.read_text())  # this make run's
    return results
