"""Names of the cache's Redis keys: today's flat layout, or grouped for a Redis Cluster.

Flat (one server, Sentinel): every key under ``{prefix}:s{page_size}:`` (keys.py's docstring
lists them). Grouped (``group_pages`` set, a cluster): page n belongs to group ``(n - 1) // G``
and everything a step or a read of that page touches shares the group's hash tag
``{prefix:sSIZE:gN}``, so it is in one slot and the groups spread over the shards: the pages and
their leases, the group's index, its copy of the totals (and that copy's lease), its checkpoint,
fence, binlog position, GTID, last step's stamp and shard channel. The singletons (config, hot,
the invalidator's lease and newest fence, inspector:found, the ``groups`` set) share
``{prefix:sSIZE}``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GroupKeys:
    """The keys of one group (or, in the flat layout, of the whole namespace): ``base`` is the
    prefix the Lua scripts build page and lease names from."""

    base: str

    def page(self, number: int) -> str:
        return f"{self.base}page:{number}"

    def lease(self, number: int) -> str:
        return f"{self.base}lease:{number}"

    @property
    def totals(self) -> str:
        return f"{self.base}totals"

    @property
    def totals_lease(self) -> str:
        return f"{self.base}lease:totals"

    @property
    def index(self) -> str:
        return f"{self.base}index"

    @property
    def binlog_position(self) -> str:
        return f"{self.base}binlog"

    @property
    def gtid(self) -> str:
        return f"{self.base}gtid"

    @property
    def checkpoint(self) -> str:
        return f"{self.base}checkpoint"

    @property
    def stamp(self) -> str:
        """Grouped layout: the last step this group applied (INVALIDATE_GROUP's lost-step check)."""
        return f"{self.base}stamp"

    @property
    def fence(self) -> str:
        """The newest fencing token this group has seen (grouped) or the leader's (flat)."""
        return f"{self.base}invalidator:fence"

    @property
    def channel(self) -> str:
        return f"{self.base}invalidations"


@dataclass(frozen=True)
class CacheKeys(GroupKeys):
    """Names of the service's Redis keys for one namespace and page size; ``group_pages`` (a
    cluster) groups the pages, None keeps today's flat names exactly."""

    prefix: str = ""
    page_size: int = 0
    group_pages: int | None = None

    def __init__(self, prefix: str, page_size: int, group_pages: int | None = None) -> None:
        base = f"{{{prefix}:s{page_size}}}:" if group_pages else f"{prefix}:s{page_size}:"
        object.__setattr__(self, "base", base)
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "page_size", page_size)
        object.__setattr__(self, "group_pages", group_pages)

    @property
    def grouped(self) -> bool:
        return self.group_pages is not None

    def group_of(self, page: int) -> int:
        """The group page ``page`` belongs to (0 in the flat layout)."""
        return (max(page, 1) - 1) // self.group_pages if self.group_pages else 0

    def group(self, number: int) -> GroupKeys:
        """The keys of group ``number``; the flat layout is one group, the namespace itself."""
        if not self.group_pages:
            return self
        return GroupKeys(f"{{{self.prefix}:s{self.page_size}:g{number}}}:")

    def of_page(self, page: int) -> GroupKeys:
        return self.group(self.group_of(page))

    def pages_of(self, number: int) -> range:
        """The page numbers of group ``number`` (grouped layout only)."""
        size = self.group_pages or 0
        return range(number * size + 1, (number + 1) * size + 1)

    def page(self, number: int) -> str:
        return self.of_page(number).base + f"page:{number}"

    def lease(self, number: int) -> str:
        return self.of_page(number).base + f"lease:{number}"

    @property
    def groups(self) -> str:
        """Grouped layout: sorted set of the groups that may hold entries (a reader registers a
        group before its first lease there)."""
        return f"{self.base}groups"

    @property
    def config(self) -> str:
        """HASH the API publishes its shared settings in (``ttl``, ``page_size``, ``max_lag``)."""
        return f"{self.base}config"

    @property
    def invalidator_lease(self) -> str:
        """The active invalidator's lease: its fencing token, with a TTL it keeps renewing."""
        return f"{self.base}invalidator:lease"

    @property
    def invalidator_fence(self) -> str:
        """The last fencing token handed out (INCR): newer leaders hold larger tokens."""
        return f"{self.base}invalidator:fence"

    @property
    def hot(self) -> str:
        """Sorted set of the pages readers hit most (service/cache/hot.py)."""
        return f"{self.base}hot"

    @property
    def inspector_found(self) -> str:
        """When the inspector last confirmed an inconsistency (Redis ms; TTL 10 min)."""
        return f"{self.base}inspector:found"

    @property
    def pattern(self) -> str:
        """Matches every key of this namespace (for tests and tooling that clean up)."""
        if self.group_pages:
            return f"{{{self.prefix}:s{self.page_size}*"
        return f"{self.base}*"
