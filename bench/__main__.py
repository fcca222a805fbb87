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
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import (
    auth_cost,
    compare,
    curves,
    curves_report,
    hotspots,
    invalidation,
    phases,
    plots,
    report,
    sweep,
    targets,
)
from bench.context import (
    REPO,
    STATE,
    Context,
    context,
    database_name,
    prepare_database,
)
from bench.curves import hot_set_orders
from bench.formatting import ratio
from bench.load import open_loop_connections, run_wrk
from bench.servers import VENV_BIN, BenchError, Gunicorn

RESULTS = REPO / "bench" / "results"
PHASES = ("redis_hits", "auth", "hot_set", "table_sizes", "invalidation")


def _hot_set(ctx: Context, floor: Gunicorn, plan: phases.Plan) -> dict[str, Any]:
    print("cost curve: hit throughput vs hot-set size ...", flush=True)
    return curves.hot_set_curve(ctx, floor, plan)


def _after_side_by_side(ctx: Context, plan: phases.Plan, skip: set[str]) -> dict[str, Any]:
    """The phases that start their own servers: miss latency vs table size, invalidation."""
    out: dict[str, Any] = {}
    if "table_sizes" not in skip:
        print("cost curve: miss latency vs table size ...", flush=True)
        out["table_sizes"] = curves.table_size_curve(ctx, plan)
    if "invalidation" not in skip:
        print("invalidation: commit to visible ...", flush=True)
        out["invalidation"] = invalidation.run(ctx, plan)
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


def run_pagination(args: argparse.Namespace) -> dict[str, Any]:
    """Miss latency of page 1 and the last page at ``--orders`` (10M by default), over HTTP.

    The near cache is off in this run and the page's Redis entry is deleted before each request,
    so every sample is a real miss: lease, MySQL, fill. Totals stay cached, as in production.
    """
    orders = args.orders
    page_size = 10
    last_page = -(-orders // page_size)
    with context(args, f"orders_bench_{orders}") as ctx:
        prepare_database(ctx, orders)
        service = ctx.service(ORDERS_NEAR_CACHE="false")
        peer = ctx.peer()
        service.start(ready_path="/healthz")
        peer.start(ready_path="/healthz")
        client = ctx.redis
        results: dict[str, Any] = {
            "machine": report.machine(),
            "orders": orders,
            "last_page": last_page,
        }
        try:

            def clear_service(page: int) -> None:
                base = f"{ctx.service_prefix}:s{page_size}:"
                client.delete(f"{base}page:{page}", f"{base}lease:{page}")

            def clear_peer(page: int) -> None:
                client.delete(f"{ctx.peer_prefix}view//orders/{page}")

            print(f"pagination: {orders:,} orders, page 1 vs page {last_page:,} ...", flush=True)
            for server, clear, n in (
                (service, clear_service, args.samples),
                (peer, clear_peer, args.peer_samples),
            ):
                first, last = phases.miss_latency(server, (1, last_page), n, clear)
                results[server.name] = {
                    "samples": n,
                    "first": first,
                    "last": last,
                    "last_over_first": ratio(last["p50_ms"], first["p50_ms"]),
                }
            body = ctx.scratch / "page-1.json"
            body.write_bytes(phases.fetch(f"{service.base_url}/orders/1")[2])
            floor = ctx.floor(body)
            floor.start(ready_path="/healthz")
            try:
                results["floor"] = phases.miss_latency(floor, (1,), args.samples, lambda _: None)[0]
            finally:
                floor.stop()
        finally:
            service.stop()
            peer.stop()
    return results


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    """``--minutes`` at 70% of the service's max, workers recycled by ORDERS_MAX_REQUESTS."""
    with context(args, "orders_bench_100000") as ctx:
        prepare_database(ctx, 100_000)
        service = ctx.service(ORDERS_MAX_REQUESTS=str(args.max_requests))
        service.start(ready_path="/healthz")
        try:
            phases.warm(service, 100)
            probe = run_wrk(f"{service.base_url}/", seconds=10, connections=32)
            rate = probe.rps * 0.7
            print(
                f"soak: max {probe.rps:.0f} req/s, offering {rate:.0f} req/s for "
                f"{args.minutes:g} min, max_requests={args.max_requests}",
                flush=True,
            )
            windows = []
            deadline = time.monotonic() + args.minutes * 60
            with phases.Sampler(service, every=5) as sampler:
                while time.monotonic() < deadline - 1:
                    seconds = min(30, deadline - time.monotonic())
                    r = run_wrk(
                        f"{service.base_url}/",
                        seconds=seconds,
                        rate=rate,
                        connections=open_loop_connections(rate),
                    )
                    windows.append(
                        {
                            "requests": r.requests,
                            "errors": r.errors,
                            "rps": round(r.rps, 1),
                            "p99_ms": round(r.latency_us["p99"] / 1000, 3),
                        }
                    )
            metrics_files = len(list(Path(service.extra["metrics_dir"]).glob("*.db")))
        finally:
            service.stop()
    samples = sampler.samples
    fifth = max(1, len(samples) // 5)
    early, late = samples[:fifth], samples[-fifth:]

    def med(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows if r.get(key) is not None)

    rss_growth = med(late, "rss_mib_mean") / med(early, "rss_mib_mean") - 1
    scrape_growth = med(late, "scrape_ms") / med(early, "scrape_ms")
    pids = {pid for s in samples for pid in s["worker_pids"]}
    errors = sum(w["errors"] for w in windows)
    return {
        "machine": report.machine(),
        "minutes": args.minutes,
        "max_rps": round(probe.rps, 1),
        "offered_rps": round(rate, 1),
        "max_requests": args.max_requests,
        "workers_seen": len(pids),
        "requests": sum(w["requests"] for w in windows),
        "errors": errors,
        "rss_growth": round(rss_growth, 4),
        "scrape_ms_early": med(early, "scrape_ms"),
        "scrape_ms_late": med(late, "scrape_ms"),
        "scrape_late_over_early": round(scrape_growth, 3),
        "metrics_db_files_at_end": metrics_files,
        "verdict": {
            "zero_errors": errors == 0,
            "rss_growth_under_5pct": rss_growth < 0.05,
            "scrape_flat": scrape_growth < 1.5,
        },
        "windows": windows,
        "samples": samples,
    }


def soak_markdown(s: dict[str, Any]) -> str:
    v = s["verdict"]
    yes = {True: "yes", False: "**no**"}
    return "\n".join(
        [
            "# Soak results",
            "",
            f"Measured {s['machine']['date']}: {s['minutes']:g} min at "
            f"{s['offered_rps']:,.0f} req/s (70% of the service's {s['max_rps']:,.0f} req/s), "
            f"ORDERS_MAX_REQUESTS={s['max_requests']} "
            f"({s['workers_seen']} worker processes over the run).",
            "",
            "| check | measured | met |",
            "|---|---|---|",
            f"| zero errors | {s['errors']} errors in {s['requests']:,} requests | "
            f"{yes[v['zero_errors']]} |",
            f"| RSS per worker growth < 5% (last fifth vs first fifth) | {s['rss_growth']:+.1%} | "
            f"{yes[v['rss_growth_under_5pct']]} |",
            f"| /metrics scrape time flat (< 1.5x) | {s['scrape_ms_early']:.1f} ms -> "
            f"{s['scrape_ms_late']:.1f} ms ({s['scrape_late_over_early']:.2f}x), "
            f"{s['metrics_db_files_at_end']} files in the metrics dir at the end | "
            f"{yes[v['scrape_flat']]} |",
            "",
            "Latency is not a soak criterion, but for the record: p99 per 30-s window (open loop, "
            "corrected for coordinated omission) ranged "
            f"{min(w['p99_ms'] for w in s['windows']):,.0f}-"
            f"{max(w['p99_ms'] for w in s['windows']):,.0f} ms, median "
            f"{statistics.median(w['p99_ms'] for w in s['windows']):,.0f} ms.",
            "",
        ]
    )


def _profile_one(server: Gunicorn, raw: Path, seconds: int) -> tuple[float, float]:
    """py-spy (GIL holder only) on one worker while wrk drives hits; (req/s, CPU us/request)."""
    worker = server.workers()[0]
    spy = subprocess.Popen(
        [
            str(VENV_BIN / "py-spy"),
            "record",
            "--pid",
            str(worker.pid),
            "--gil",
            "--rate",
            "500",
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    cpu_before = phases.cpu_seconds(server)
    load = run_wrk(f"{server.base_url}/", seconds=seconds + 1, connections=32, pages="cycle:1:100")
    cpu = phases.cpu_seconds(server) - cpu_before
    spy.wait(60)
    return load.rps, cpu * 1e6 / max(1, load.requests)


def run_profile(args: argparse.Namespace) -> str:
    """py-spy on one worker of the floor and of the service under the same closed-loop hit load.

    ``--gil`` samples only the thread holding the GIL, so waiting threads (the gthread poller,
    idle pool threads, the invalidation listener) do not hide the work of a hit. The floor's
    profile is the part of a hit the service cannot remove without leaving Flask and gunicorn.
    """
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts: list[str] = []
    measured: dict[str, tuple[Path, float]] = {}
    with context(args, "orders_bench_100000") as ctx:
        prepare_database(ctx, 100_000)
        service = ctx.service()
        service.start(ready_path="/healthz")
        try:
            body = ctx.scratch / "page-1.json"
            body.write_bytes(phases.fetch(f"{service.base_url}/orders/1")[2])
            floor = ctx.floor(body)
            floor.start(ready_path="/healthz")
            try:
                time.sleep(2)
                for server in (floor, service):
                    phases.warm(server, 100)
                    raw = out / f"profile-hit-{server.name}.collapsed"
                    rps, cpu_us = _profile_one(server, raw, args.seconds)
                    texts.append(hotspots.markdown(raw, server.name, rps, cpu_us))
                    measured[server.name] = (raw, cpu_us)
            finally:
                floor.stop()
        finally:
            service.stop()
    head = [
        "# Where a cache hit's CPU goes",
        "",
        f"Measured {report.machine()['date']}; 1-minute load average {os.getloadavg()[0]:.1f} at "
        "the end. `make bench-profile`.",
        "",
        *hotspots.difference(measured["floor"], measured["service"]),
    ]
    text = "\n".join([*head, *texts])
    (out / "profile-hit.md").write_text(text)
    return text


def run_ablation(args: argparse.Namespace) -> str:
    """The service with one cost switched off at a time (by its own settings), interleaved with
    the floor: what the request log line and the near cache are worth per hit, and what turning
    bearer-token authentication on costs."""
    variants = {
        "service as shipped": {},
        "service, ORDERS_LOG_LEVEL=warning (no request log line)": {"ORDERS_LOG_LEVEL": "warning"},
        "service, ORDERS_NEAR_CACHE=false (Redis GET per hit)": {"ORDERS_NEAR_CACHE": "false"},
    }
    # Auth on, every request with the same real RS256 token (verified once per worker, then
    # from the verified-token cache); the key set comes over HTTP from a server in this process.
    keys = auth_cost.Keys()
    auth_label = "service, ORDERS_AUTH_ISSUER set (bearer token on every request)"
    variants[auth_label] = {
        "ORDERS_AUTH_ISSUER": auth_cost.ISSUER,
        "ORDERS_AUTH_AUDIENCE": auth_cost.AUDIENCE,
        "ORDERS_AUTH_JWKS_URL": keys.url,
    }
    plan = phases.Plan(closed_seconds=5, rounds=5)
    with context(args, "orders_bench_100000") as ctx, contextlib.closing(keys):
        prepare_database(ctx, 100_000)
        servers = [ctx.service(f"variant{i}", **env) for i, env in enumerate(variants.values())]
        servers[list(variants).index(auth_label)].headers = {
            "Authorization": f"Bearer {keys.token('RS256')}"
        }
        for server in servers:
            server.start(ready_path="/healthz")
        try:
            body = ctx.scratch / "page-1.json"
            body.write_bytes(phases.fetch(f"{servers[0].base_url}/orders/1")[2])
            floor = ctx.floor(body)
            floor.start(ready_path="/healthz")
            try:
                time.sleep(plan.settle_seconds)
                systems = [floor, *servers]
                for server in systems:
                    phases.warm(server, plan.hot_pages)
                measured = phases.closed_loop(systems, plan)
            finally:
                floor.stop()
        finally:
            for server in servers:
                server.stop()
    floor_m = measured["floor"]
    rows = [["Flask floor", floor_m["rps"], "1.00x", floor_m["cpu_us_per_request"], "1.00x"]]
    for label, server in zip(variants, servers, strict=True):
        m = measured[server.name]
        rows.append(
            [
                label,
                m["rps"],
                f"{m['rps'] / floor_m['rps']:.2f}x",
                m["cpu_us_per_request"],
                f"{m['cpu_us_per_request'] / floor_m['cpu_us_per_request']:.2f}x",
            ]
        )
    lines = [
        "# Ablation: what each part of the service's hit path costs",
        "",
        f"Measured {report.machine()['date']}; closed loop, {plan.rounds} interleaved rounds of "
        f"{plan.closed_seconds:g} s (median), hot pages 1-{plan.hot_pages}; 1-minute load "
        f"average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| system | req/s | x floor | server CPU us / req | CPU x floor |",
        "|---|---|---|---|---|",
        *[f"| {r[0]} | {r[1]:,.0f} | {r[2]} | {r[3]:,.0f} | {r[4]} |" for r in rows],
        "",
    ]
    text = "\n".join(lines)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text(text)
    return text


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
            results = run_pagination(args)
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
            results = run_soak(args)
            report.write(out, "soak", results, soak_markdown(results))
            print(soak_markdown(results))
            if not all(results["verdict"].values()):
                return 1
        elif args.command == "ablation":
            print(run_ablation(args))
        else:
            print(run_profile(args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
