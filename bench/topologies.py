"""The phases that measure the service beyond one server, each on throwaway servers of its own:
misses read from MySQL replicas, MySQL primary promotions, Redis Sentinel failovers and a Redis
Cluster. ``make bench`` runs them after the side-by-side phases; the two failover phases also
run alone (``python -m bench promotion``, ``python -m bench sentinel-failover``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import cluster, phases, promotion, replica_reads, report, sentinel_failover
from bench.context import Context

PHASES = ("replica_reads", "promotion", "sentinel_failover", "cluster")
COMMANDS = ("promotion", "sentinel-failover")


def run(ctx: Context, plan: phases.Plan, skip: set[str]) -> dict[str, Any]:
    """Every topology phase not in ``skip``, by its name in ``PHASES``."""
    out: dict[str, Any] = {}
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
        print("cluster: balance per shard, hits and steps vs one server ...", flush=True)
        out["cluster"] = cluster.run(cluster.plan_for(smoke=plan == phases.SMOKE))
    return out


def command(args: argparse.Namespace, plan: phases.Plan, out: Path) -> None:
    """One of ``COMMANDS`` alone: its results and report under ``out``."""
    if args.command == "promotion":
        results = {"machine": report.machine(), "promotion": promotion.run(args.promotions)}
        report.write(out, "promotion", results, promotion.markdown(results["promotion"]))
        print(promotion.markdown(results["promotion"]))
    elif args.command == "sentinel-failover":
        results = sentinel_failover.run(plan, args.failovers or plan.failovers)
        report.write(out, "sentinel_failover", results, sentinel_failover.markdown(results))
        print(sentinel_failover.markdown(results))
