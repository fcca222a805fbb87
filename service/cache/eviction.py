"""Which Redis ``maxmemory-policy`` the cache can live with: the index and the control keys must
never be evicted.

The control keys (``index``, ``binlog``, ``checkpoint``, ``config``, ``invalidator:fence``) carry
no TTL; entries and leases do. The ``volatile-*`` policies evict only keys with a TTL, so they
only ever drop an entry (refilled) or a lease (its fill is refused, or a newer invalidator is
fenced in). ``noeviction`` evicts nothing: when full, writes fail (fills are skipped; an
invalidation step retries, so the checkpoint stops and entries age out by the bound).
``allkeys-*`` may evict the index (a shift then misses pages and serves them one order behind:
issue 18 case 6) or the position (a fresh start, everything dropped). The service refuses to
start under those, and ``/readyz`` reports them if the policy changes later.
"""

from __future__ import annotations

SAFE_POLICIES = frozenset(
    {"noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}
)


class EvictingPolicy(RuntimeError):
    """Redis may evict the cache's control keys: refuse to run on it."""


def policy_problem(policy: str | None) -> str | None:
    """Why ``policy`` is not safe for the cache, or None if it is (or cannot be known)."""
    if policy is None or policy in SAFE_POLICIES:
        return None
    return (
        f"maxmemory-policy {policy} may evict keys without a TTL (the page index, the binlog "
        f"position, the checkpoint): use one of {', '.join(sorted(SAFE_POLICIES))}"
    )


def describe(policy: str | None) -> str:
    """``ok: <policy>``, ``unsafe: <policy> ...`` or ``unknown: ...`` for ``/readyz``."""
    if policy is None:
        return "unknown: neither CONFIG GET nor INFO memory is allowed"
    problem = policy_problem(policy)
    return f"ok: {policy}" if problem is None else f"unsafe: {policy}: {problem}"
