"""The exploratory phases, each its own make target and none on `make test`'s path (the smoke runs
``make bench``'s phases only): pagination alone, the soak, py-spy profiles, ablations.

Imported by ``python -m bench`` only for these commands.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench import auth_cost, hotspots, phases, report
from bench.context import context, prepare_database
from bench.formatting import ratio
from bench.load import open_loop_connections, run_wrk
from bench.servers import VENV_BIN, Gunicorn


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
