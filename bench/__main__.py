"""``python -m bench bench|smoke|invalidation|pagination|soak|...``: the make targets' entry point.

Each command starts what it needs (its own MariaDB, the three systems under gunicorn), measures,
writes results under ``--out`` and stops everything it started, even on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import (
    auth_cost,
    cluster,
    compare,
    curves,
    curves_report,
    invalidation,
    phases,
    plots,
    promotion,
    replica_reads,
    report,
    sentinel_failover,
    sweep,
    targets,
)
from bench.context import REPO, STATE, Context, context, database_name, prepare_database
from bench.curves import hot_set_orders
from bench.servers import BenchError, Gunicorn

RESULTS = REPO / "bench" / "results"
PHASES = (
    *("redis_hits", "auth", "hot_set", "table_sizes", "invalidation"),
    *("replica_reads", "promotion", "sentinel_failover", "cluster"),
)


def _hot_set(ctx: Context, floor: Gunicorn, plan: phases.Plan) -> dict[str, Any]:
    print("cost curve: hit throughput vs hot-set size ...", flush=True)
    return curves.hot_set_curve(ctx, floor, plan)


def _after_side_by_side(ctx: Context, plan: phases.Plan, skip: set[str]) -> dict[str, Any]:
    """The phases that start their own servers: miss latency vs table size, invalidation,
    replica reads, MySQL promotions, the cluster."""
    out: dict[str, Any] = {}
    if "table_sizes" not in skip:
        print("cost curve: miss latency vs table size ...", flush=True)
        out["table_sizes"] = curves.table_size_curve(ctx, plan)
    if "invalidation" not in skip:
        print("invalidation: commit to visible ...", flush=True)
        out["invalidation"] = invalidation.run(ctx, plan)
    if "replica_reads" not in skip:
        print("replica reads: primary queries, fill latency, fallback by lag ...", flush=True)
        out["replica_reads"] = replica_reads.run(
            misses=plan.replica_misses, lag_misses=plan.replica_lag_misses, lags=plan.replica_lags
        )
    if "promotion" not in skip:
        print(f"MySQL failover: {plan.promotions} promotions under writes ...", flush=True)
        out["promotion"] = promotion.run(plan.promotions, ctx.scratch / "promotion")
    if "sentinel_failover" not in skip:
        print(f"Sentinel: {plan.failovers} failovers, hits through Sentinel ...", flush=True)
        out["sentinel_failover"] = sentinel_failover.run(plan, plan.failovers)
    if "cluster" not in skip:
        out["cluster"] = cluster.run(cluster.plan_for(smoke=plan == phases.SMOKE))
    return out


def run_bench(args: argparse.Namespace, plan: phases.Plan) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()
    skip = set(args.skip)
    with context(args, database_name(plan.orders)) as ctx:
        prepare_database(ctx, plan.orders)
        if "table_sizes" not in skip:
            for orders in plan.table_sizes:
                prepare_database(ctx, orders)
        if "hot_set" not in skip:
            prepare_database(ctx, hot_set_orders(plan, ctx.page_size))
        service = ctx.service()
        peer = ctx.peer()
        redis_hits = (
            None
            if "redis_hits" in skip
            else ctx.service("service_redis", ORDERS_NEAR_CACHE="false")
        )
        # Bearer-token auth on, every request with one real RS256 token (verified once per
        # worker, then from the verified-token cache): its cost per hit, reported on its own.
        auth_keys = None if "auth" in skip else auth_cost.Keys()
        service_auth = None
        if auth_keys is not None:
            service_auth = ctx.service(
                "service_auth",
                ORDERS_AUTH_ISSUER=auth_cost.ISSUER,
                ORDERS_AUTH_AUDIENCE=auth_cost.AUDIENCE,
                ORDERS_AUTH_JWKS_URL=auth_keys.url,
            )
            service_auth.headers = {"Authorization": f"Bearer {auth_keys.token('RS256')}"}
        services = [s for s in (service, peer, redis_hits, service_auth) if s is not None]
        floor: Gunicorn | None = None
        try:
            for s in services:
                s.start(ready_path="/healthz")
            _, _, body = phases.fetch(f"{service.base_url}/orders/1")
            body_file = ctx.scratch / "page-1.json"
            body_file.write_bytes(body)
            floor = ctx.floor(body_file)
            floor.start(ready_path="/healthz")
            systems = [floor, peer, service]
            closed = [*systems, *(s for s in (redis_hits, service_auth) if s is not None)]
            time.sleep(plan.settle_seconds)
            for s in closed:
                phases.warm(s, plan.hot_pages)
            _, headers, _ = phases.fetch(f"{service.base_url}/orders/1")
            results: dict[str, Any] = {
                "machine": report.machine(),
                "plan": asdict(plan),
                "gunicorn": {
                    "worker_class": ctx.shape.worker_class,
                    "workers": ctx.workers,
                    "threads": ctx.threads,
                    "keepalive": ctx.shape.keepalive,
                },
                "page_bytes": len(body),
                "service_x_cache_after_warm": headers.get("X-Cache"),
                "load_tool": "wrk 4.1 (Debian) + bench/wrk_load.lua",
            }
            print("hit throughput (closed loop) ...", flush=True)
            results["hit_throughput"] = phases.closed_loop(closed, plan)
            for extra in (redis_hits, service_auth):
                if extra is not None:
                    extra.stop()  # only the closed loop needs it
            floor_rps = results["hit_throughput"]["floor"]["rps"]
            print("latency at fixed rates (open loop) ...", flush=True)
            results["latency_sweep"] = phases.latency_sweep(systems, floor_rps, plan)
            memory = {s.name: phases.worker_memory(s) for s in systems}
            memory["service"]["redis_bytes_per_page"] = phases.redis_bytes_per_page(
                ctx.redis, ctx.service_pages
            )["bytes_mean"]
            memory["peer"]["redis_bytes_per_page"] = phases.redis_bytes_per_page(
                ctx.redis, f"{ctx.peer_prefix}*"
            )["bytes_mean"]
            results["memory"] = memory
            print("cold start ...", flush=True)
            rate = floor_rps * plan.cold_rate_fraction
            results["cold_start"] = {
                "peer": phases.cold_start(
                    peer,
                    clear=ctx.clear_peer,
                    cached=lambda: phases.count_keys(ctx.redis, f"{ctx.peer_prefix}view*"),
                    mysql=ctx.mysql,
                    rate=rate,
                    hit_header="hit_cache",
                    plan=plan,
                ),
                "service": phases.cold_start(
                    service,
                    clear=ctx.clear_service,
                    cached=lambda: phases.count_keys(ctx.redis, ctx.service_pages),
                    mysql=ctx.mysql,
                    rate=rate,
                    hit_header="X-Cache",
                    plan=plan,
                ),
            }
            service.stop()
            peer.stop()
            if "hot_set" not in skip:
                results["hot_set"] = _hot_set(ctx, floor, plan)
        finally:
            for running in [*services, *([floor] if floor else [])]:
                running.stop()
            if auth_keys is not None:
                auth_keys.close()
        results.update(_after_side_by_side(ctx, plan, skip))
    results["notes"] = [
        f"Hot set: pages 1-{plan.hot_pages}, round robin, warmed before measuring; the floor "
        "answers every page with the bytes of the service's page 1.",
        f"Closed loop: wrk, 1 thread, {plan.closed_connections} connections, "
        f"{plan.closed_seconds:g} s x {plan.rounds} interleaved rounds (median). Redis hits: "
        "the service with ORDERS_NEAR_CACHE=false, in the same interleaved rounds.",
        "Open loop: one wrk thread per connection on a fixed schedule; a request whose "
        "connection was still busy at its scheduled time is timed from that time (wrk2's "
        f"coordinated-omission correction). {plan.sweep_seconds:g} s per point, "
        f"{plan.sweep_rounds} interleaved rounds, the round with the lower p99 kept per system "
        "(other work on a shared machine only adds latency).",
        f"Cold start: keys under the system's Redis prefix deleted and the workers restarted; "
        f"Zipf(s={plan.cold_zipf_s:g}) over pages 1-{plan.cold_pages} at "
        f"{plan.cold_rate_fraction:.0%} of the floor's max; SELECTs = Com_select delta on the "
        "bench's own MariaDB (pool pre-pings are COM_PING, not counted).",
        "The peer sets Flask-Caching's `hit_cache` header (response_hit_indication) so its hit "
        "rate can be seen; nothing else is added to the documented pattern.",
        f"Cost curves: hot sets {', '.join(f'{n:,}' for n in plan.hot_sets)} pages "
        f"({plan.hot_set_seconds:g} s per point); table sizes "
        f"{', '.join(f'{n:,}' for n in plan.table_sizes)} orders (BENCH_HOT_SETS and "
        "BENCH_TABLE_SIZES choose others; the first run at a size seeds it once).",
    ]
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_1m_before_after"] = [load_before[0], os.getloadavg()[0]]
    results["machine"]["loadavg_before"] = list(load_before)
    results["machine"]["loadavg_after"] = list(os.getloadavg())
    results["machine"]["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    return results


def finish(
    results: dict[str, Any], out: Path, baseline: dict[str, Any] | None, stem: str = "results"
) -> None:
    pagination = None
    pagination_file = out / "pagination.json"
    if pagination_file.exists():
        pagination = json.loads(pagination_file.read_text())
    results["baseline"] = (baseline or {}).get("machine", {}).get("date")
    results["targets"] = targets.targets(results, pagination, baseline)
    report.write(out, stem, results, report.markdown(results, pagination))
    plots.plot(results, out / f"{stem}.png")
    plots.plot_curves(results, out)
    print((out / f"{stem}.md").read_text())


def _sizes(text: str) -> list[int]:
    """``1000,10k,1M`` -> [1000, 10000, 1000000]."""
    out = []
    for raw in text.split(","):
        part = raw.strip().lower().replace("_", "")
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
        out.append(int(float(part[:-1] if scale > 1 else part) * scale))
    return out


def _plan(args: argparse.Namespace) -> phases.Plan:
    """The full plan (the smoke's in miniature), with the sizes given on the command line."""
    plan = phases.SMOKE if args.command == "smoke" else phases.Plan()
    if args.hot_sets is not None:
        plan = dataclasses.replace(plan, hot_sets=tuple(args.hot_sets))
    if args.table_sizes is not None:
        plan = dataclasses.replace(plan, table_sizes=tuple(args.table_sizes))
    return plan


FAILOVER_COMMANDS = ("promotion", "sentinel-failover")


def _failovers(args: argparse.Namespace, plan: phases.Plan, out: Path) -> None:
    """The failover phases run alone, each on servers of its own."""
    if args.command == "promotion":
        results = {"machine": report.machine(), "promotion": promotion.run(args.promotions)}
        report.write(out, "promotion", results, promotion.markdown(results["promotion"]))
        print(promotion.markdown(results["promotion"]))
    elif args.command == "sentinel-failover":
        results = sentinel_failover.run(plan, args.failovers or plan.failovers)
        report.write(out, "sentinel_failover", results, sentinel_failover.markdown(results))
        print(sentinel_failover.markdown(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "command",
        choices=[
            "bench",
            "smoke",
            "curves",
            "pagination",
            "soak",
            "profile",
            "ablation",
            "compare",
            "sweep",
            "invalidation",
            "promotion",
            "sentinel-failover",
        ],
    )
    parser.add_argument("--out", default=str(RESULTS), help="directory for the result files")
    parser.add_argument(
        "--state",
        default=str(STATE),
        help="the bench's own MariaDB data and logs (kept between runs)",
    )
    parser.add_argument(
        "--mysql-port", type=int, default=int(os.environ.get("BENCH_MYSQL_PORT", "3316"))
    )
    parser.add_argument("--buffer-pool", default="2G")
    parser.add_argument(
        "--keep-mysql", action="store_true", help="leave the bench's MariaDB running afterwards"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--workers", type=int, default=0, help="default: the service's default")
    parser.add_argument("--threads", type=int, default=0, help="default: the service's default")
    parser.add_argument("--keepalive", type=int, default=5, help="gunicorn keep-alive, seconds")
    parser.add_argument(
        "--worker-class", default="gthread", choices=["gthread", "sync"], help="gunicorn worker"
    )
    parser.add_argument(
        "--baseline",
        default=targets.BASELINE,
        help="previous results for the no-worse-than-before targets: REV:PATH or a file",
    )
    parser.add_argument(
        "--hot-sets",
        type=_sizes,
        default=None,
        help="hot-set sizes in pages, comma separated (default 1k,10k,100k,1M)",
    )
    parser.add_argument(
        "--table-sizes",
        type=_sizes,
        default=None,
        help="miss-latency curve table sizes (default 100k,1M,10M; 10M seeds once, ~3 min)",
    )
    parser.add_argument(
        "--skip",
        type=lambda text: [p for p in text.split(",") if p],
        default=[],
        help=f"phases of `bench` to leave out, comma separated: {', '.join(PHASES)}",
    )
    parser.add_argument(
        "--rev-a", default="", help="compare: revision A (default origin/main or main)"
    )
    parser.add_argument(
        "--rev-b", default="HEAD", help="compare: revision B (HEAD: the working tree)"
    )
    parser.add_argument(
        "--compare-seconds", type=float, default=6, help="compare/sweep: s per round"
    )
    parser.add_argument("--compare-rounds", type=int, default=5, help="compare: interleaved rounds")
    parser.add_argument("--sweep-rounds", type=int, default=2, help="sweep: rounds per setting")
    parser.add_argument(
        "--grid", default=sweep.DEFAULT_GRID, help="sweep: field=v1,v2;... varied one at a time"
    )
    parser.add_argument("--orders", type=int, default=10_000_000, help="pagination table size")
    parser.add_argument("--samples", type=int, default=200, help="pagination samples per page")
    parser.add_argument(
        "--peer-samples",
        type=int,
        default=5,
        help="pagination samples per page for the peer (OFFSET is slow)",
    )
    parser.add_argument(
        "--write-rates", type=_sizes, default=None, help="invalidation: offered rows/s"
    )
    parser.add_argument("--writers", type=int, default=0, help="invalidation: writer connections")
    parser.add_argument(
        "--rows-per-transaction", type=int, default=0, help="invalidation: rows per write"
    )
    parser.add_argument(
        "--profile-invalidator",
        action="store_true",
        help="invalidation: py-spy on the invalidator at the highest write rate",
    )
    parser.add_argument(
        "--promotions", type=int, default=20, help="promotion: MySQL failovers in a row"
    )
    parser.add_argument(
        "--failovers", type=int, default=0, help="sentinel-failover: failovers (default 20)"
    )
    parser.add_argument("--minutes", type=float, default=10, help="soak length")
    parser.add_argument("--max-requests", type=int, default=20000, help="soak worker recycling")
    parser.add_argument("--seconds", type=int, default=20, help="profile length")
    parser.add_argument(
        "--nice",
        type=int,
        default=-5,
        help="niceness of the bench and everything it starts (shared machine)",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    try:
        plan = _plan(args)
        if args.command in ("bench", "smoke"):
            baseline = targets.load_baseline(args.baseline, REPO)
            finish(run_bench(args, plan), out, baseline)
        elif args.command == "invalidation":
            results = invalidation.standalone(args, invalidation.plan_from_args(args))
            report.write(out, "invalidation", results, invalidation.markdown(results))
            plots.plot_curves({"invalidation": results["invalidation"]}, out)
            print((out / "invalidation.md").read_text())
        elif args.command in FAILOVER_COMMANDS:
            _failovers(args, plan, out)
        elif args.command == "curves":
            results = curves.run(args, plan)
            report.write(out, "curves", results, curves_report.curves_markdown(results))
            plots.plot_curves(results, out)
            print(curves_report.curves_markdown(results))
        elif args.command == "compare":
            print(compare.run(args))
        elif args.command == "sweep":
            print(sweep.run(args))
        elif args.command == "pagination":
            from bench import explore

            results = explore.run_pagination(args)
            text = "\n".join(
                [
                    "# Pagination results",
                    "",
                    f"Measured {results['machine']['date']}.",
                    "",
                    *report.pagination_markdown(results),
                ]
            )
            report.write(out, "pagination", results, text)
            print(text)
        elif args.command == "soak":
            from bench import explore

            results = explore.run_soak(args)
            report.write(out, "soak", results, explore.soak_markdown(results))
            print(explore.soak_markdown(results))
            if not all(results["verdict"].values()):
                return 1
        elif args.command == "ablation":
            from bench import explore

            print(explore.run_ablation(args))
        else:
            from bench import explore

            print(explore.run_profile(args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
