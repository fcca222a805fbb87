"""The topology phases' part of ``make bench``'s report (bench/topologies.py runs them)."""

from __future__ import annotations

from typing import Any

from bench import promotion, replica_reads, sentinel_failover
from bench.cluster import cluster_section


def sections(results: dict[str, Any]) -> list[str]:
    """The topology phases' part of ``make bench``'s report."""
    lines = replica_reads.section(results.get("replica_reads"))
    if results.get("promotion"):
        lines += [promotion.markdown(results["promotion"]), ""]
    if results.get("sentinel_failover"):
        lines += [sentinel_failover.markdown(results["sentinel_failover"]), ""]
    lines += cluster_section(results.get("cluster"))
    return lines
