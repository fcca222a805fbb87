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
    arguments,
    auth_cost,
    compare,
    curves,
    curves_report,
    invalidation,
    phases,
    plots,
    report,
    sweep,
    targets,
    topologies,
)
from bench.context import REPO, Context, context, database_name, prepare_database
from bench.curves import hot_set_orders
from bench.servers import BenchError, Gunicorn


def _hot_set(ctx: Context, floor: Gunicorn, plan: phases.Plan) -> dict[str, Any]:
    print("cost curve: hit throughput vs hot-set size ...", flush=True)
    return curves.hot_set_curve(ctx, floor, plan)


def _after_side_by_side(ctx: Context, plan: phases.Plan, skip: set[str]) -> dict[str, Any]:
    """The phases that start their own servers: miss latency vs table size, invalidation, and
    the topologies (replicas, promotions, Sentinel, Cluster)."""
    out: dict[str, Any] = {}
    if "table_sizes" not in skip:
        print("cost curve: miss latency vs table size ...", flush=True)
        out["table_sizes"] = curves.table_size_curve(ctx, plan)
    if "invalidation" not in skip:
        print("invalidation: commit to visible ...", flush=True)
        out["invalidation"] = invalidation.run(ctx, plan)
    out.update(topologies.run(ctx, plan, skip))
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


def _plan(args: argparse.Namespace) -> phases.Plan:
    """The full plan (the smoke's in miniature), with the sizes given on the command line."""
    plan = phases.SMOKE if args.command == "smoke" else phases.Plan()
    if args.hot_sets is not None:
        plan = dataclasses.replace(plan, hot_sets=tuple(args.hot_sets))
    if args.table_sizes is not None:
        plan = dataclasses.replace(plan, table_sizes=tuple(args.table_sizes))
    return plan


def main(argv: list[str] | None = None) -> int:
    args = arguments.parser(__doc__).parse_args(argv)
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
        elif args.command in topologies.COMMANDS:
            topologies.command(args, plan, out)
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
