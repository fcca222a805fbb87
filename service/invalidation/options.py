"""What the invalidator needs besides its connections (the ORDERS_INVALIDATOR_* settings)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InvalidatorOptions:
    """What the invalidator needs besides its connections (the ORDERS_INVALIDATOR_* settings)."""

    page_size: int
    server_id: int
    cache_ttl: int
    heartbeat_seconds: float = 0.5
    recheck_delay: float = 0.1
    stall_after: float = 10.0
    chunk_rows: int = 5_000
    lease_ttl: float = 3.0
    first_contact_timeout: float = 60.0
    verify_blocks: int = 4
    verify_interval: float = 1.0
    repair_settle: float = 0.0
