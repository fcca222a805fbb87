"""Settings of the two processes beside the API: the invalidator (binlog follower) and the
consistency inspector."""

from __future__ import annotations

from dataclasses import dataclass

from service.config.declare import setting
from service.config.parsers import non_negative_float, positive_float, positive_int, tcp_port


@dataclass(frozen=True)
class InvalidatorSettings:
    """The invalidator: its binlog identity, health, heartbeat, rechecks, lease, block counts."""

    invalidator_metrics_port: int = setting(
        "9102",
        tcp_port,
        "Port of the invalidator's own /metrics (and /healthz) endpoint.",
    )
    invalidator_server_id: int = setting(
        "4242",
        positive_int,
        "Replica server id the invalidator uses on the binlog stream; unique per MySQL.",
    )
    invalidator_stall_after: float = setting(
        "10",
        positive_float,
        "Seconds without progress on the binlog stream (no event, no heartbeat) after which the"
        " invalidator's /healthz answers 503.",
    )
    invalidator_heartbeat: float = setting(
        "0.5",
        positive_float,
        "Seconds between the invalidator's heartbeat writes to MySQL; each proves, once it "
        "comes back through the binlog, that every earlier commit is applied (the checkpoint).",
    )
    invalidator_recheck_delay: float = setting(
        "0.1",
        non_negative_float,
        "Seconds after an invalidation that the same pages are invalidated again: a binlog "
        "reader can see a commit a moment before other sessions can read it (0: off).",
    )
    invalidator_chunk_rows: int = setting(
        "5000",
        positive_int,
        "Rows of a large transaction applied per step while it is still being read.",
    )
    invalidator_lease_ttl: float = setting(
        "3",
        positive_float,
        "Seconds the active invalidator's lease lasts without renewal; a standby takes over "
        "after it lapses.",
    )
    invalidator_verify_blocks: int = setting(
        "4",
        positive_int,
        "Block counts (4096 ids each) the active invalidator checks against the rows every "
        "ORDERS_INVALIDATOR_VERIFY_INTERVAL; a drifted one is recounted and its pages dropped.",
    )
    invalidator_verify_interval: float = setting(
        "1",
        positive_float,
        "Seconds between two rounds of block-count checks (a full tour takes blocks / "
        "ORDERS_INVALIDATOR_VERIFY_BLOCKS rounds).",
    )
    invalidator_repair_settle: float = setting(
        "0",
        non_negative_float,
        "Seconds without DDL on orders before the invalidator rebuilds the block counts after "
        "one; it always waits for orders to exist (it never creates tables or triggers: "
        "`orders-service migrate` does).",
    )


@dataclass(frozen=True)
class InspectorSettings:
    """The consistency inspector: how often and how much it samples, where it serves /metrics."""

    inspector_interval: float = setting(
        "1",
        positive_float,
        "Seconds between two samples of the consistency inspector (orders-service inspect).",
    )
    inspector_pages: int = setting(
        "100",
        positive_int,
        "Pages the inspector looks at per sample (a quarter for the most read, the rest a tour "
        "of every page number in blocks of 10); its MySQL cost is bounded by "
        "ORDERS_INSPECTOR_MAX_QUERIES.",
    )
    inspector_max_queries: float = setting(
        "20",
        positive_float,
        "MySQL queries a second the consistency inspector may make at most (first checks and "
        "rechecks together; entries the API would not serve as hits cost none).",
    )
    inspector_metrics_port: int = setting(
        "9103",
        tcp_port,
        "Port of the inspector's own /metrics endpoint.",
    )
    inspector_host: str = setting(
        "127.0.0.1",
        str,
        "Address the inspector's /metrics and /healthz bind (0.0.0.0 where something else must "
        "scrape it, as in a container).",
    )
