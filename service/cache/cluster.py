"""The cache's operations on a Redis Cluster: every command and script within one group's slot.

A Redis Cluster refuses a multi-key command or script whose keys are in different slots
(``CROSSSLOT``), and one hash tag for the whole cache would put it on one shard. So the pages are
grouped (``layout.py``): a read is one MGET of the page, its group's totals copy and its group's
checkpoint; a fill takes and checks the group's lease; an invalidation step becomes one
``INVALIDATE_GROUP`` per group it touches, each atomic in its group:

- a step that changes the totals, or records a position or a checkpoint, touches every group in
  ``groups`` (a reader registers a group before its first lease there, so a group the step did
  not see was filled after the step's changes committed);
- the invalidator resumes from the oldest group position (replaying into a group that is ahead
  is harmless: invalidating twice is the same as once, and a checkpoint never moves back), and
  starts fresh when a registered group has no position (it lost it, or never had one);
- the fence is per group: the new leader re-takes every group's fence (``claim_fence``) before
  it applies anything, and a new group is seeded with the newest fence when it is registered.

MOVED, ASK and TRYAGAIN are redis-py's (it follows the redirection, refreshing its slot map);
a connection error refreshes the map too and surfaces as ``CacheUnavailable``, like any failure.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import secrets
from collections.abc import Iterable
from typing import Any, cast

import redis
from redis.exceptions import AskError, ConnectionError, MovedError, TimeoutError, TryAgainError

from service.cache.keys import CacheKeys, Invalidation, Keep, strip_step
from service.cache.replies import Lease, Lookup, block, lease_answer, lookup, recent
from service.cache.store import FENCED, LEASE_MS, NOT_FOLLOWING, RedisCache
from service.invalidation.changes import BinlogPosition

# Answers of a shard's pipeline that another try through the cluster client may turn into a
# result: it follows MOVED and ASK, waits out TRYAGAIN, and refreshes its map on a lost node.
_REDIRECTED = (MovedError, AskError, TryAgainError, ConnectionError, TimeoutError)


class ClusterCache(RedisCache):
    """``RedisCache`` for the grouped layout; the flat one stays ``RedisCache``'s own."""

    keys: CacheKeys

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The stamp each group holds after this invalidator's last step there (its next step
        # expects it): a group whose shard forgot a step shows an older one.
        self._stamps: dict[int, str] = {}
        # Each group's position at the start of this term: a replayed step a group is already
        # past leaves its GTID state alone (a state never moves back under a newer checkpoint).
        self._held: dict[int, BinlogPosition] = {}
        self._steps = itertools.count(1)
        self._term = secrets.token_hex(4)
        # The position (without its step number) the last applied step recorded: a step that
        # only carries it on (every step records one, service/invalidation/steps.py) need not
        # reach every group.
        self._applied_position: str | None = None

    def read(self, page: int) -> Lookup:
        group = self.keys.of_page(page)
        raw_page, raw_totals, raw_checkpoint = self._call(
            "mget",
            lambda: self.client.mget(group.page(page), group.totals, group.checkpoint),
        )
        return lookup(page, raw_page, raw_totals, raw_checkpoint)

    def _register(self, page: int) -> int:
        """Put the page's group in ``groups`` and read the newest fence (LEASE_AT's seed), in
        one MULTI in the control slot."""
        group = self.keys.group_of(page)

        def register() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(self.keys.groups, {str(group): group})
            pipe.get(self.keys.invalidator_fence)
            return pipe.execute()

        _, fence = self._call("lease", register)
        return int(cast(bytes, fence)) if fence else 0

    def _lease_in_group(self, page: int, lease_key: str, member: str) -> Lease | None:
        fence = self._register(page)
        group = self.keys.of_page(page)
        token = secrets.token_hex(8)
        answer = self._call(
            "lease",
            lambda: self.run_function(
                "lease_at",
                [lease_key, group.index, group.fence],
                [token, LEASE_MS, member, fence or "", group.gtid, group.checkpoint],
            ),
        )
        taken_at, gtid, checkpoint = lease_answer(answer)
        return Lease(token, taken_at, gtid, checkpoint) if taken_at else None

    def lease_page(self, page: int) -> Lease | None:
        return self._lease_in_group(page, self.keys.lease(page), str(page))

    def lease_totals(self, page: int = 1) -> Lease | None:
        return self._lease_in_group(page, self.keys.of_page(page).totals_lease, "")

    def fill_totals(self, token: str, entry: Any, page: int = 1) -> bool:
        group = self.keys.of_page(page)
        return self._fill_if_leased(group.totals_lease, group.totals, token, entry)

    # ---- the invalidator ---------------------------------------------------------------------
    def registered_groups(self) -> list[int]:
        raw = self._call("zrange", lambda: self.client.zrange(self.keys.groups, 0, -1))
        return sorted(int(member) for member in cast(list[bytes], raw or []))

    def _touched(self, change: Invalidation) -> list[int]:
        """The groups a step must reach: all registered ones when it changes the totals or
        records progress; otherwise those of its pages and, for a shift, the groups from the
        first shifted page on."""
        moved = change.position is not None and (
            strip_step(change.position) != self._applied_position
        )
        wide = not isinstance(change.totals, Keep) or moved or change.checkpoint_ms is not None
        touched: set[int] = set()
        if wide:
            touched.update(self.registered_groups())
        elif change.from_page is not None:
            touched.update(
                g for g in self.registered_groups() if self._shifted(g, change.from_page)
            )
        touched.update(self.keys.group_of(page) for page in change.pages)
        return sorted(touched)

    def _shifted(self, group: int, from_page: int | None) -> bool:
        return from_page is not None and self.keys.pages_of(group).stop > from_page

    def apply_step(self, change: Invalidation) -> int:
        """The step in every group it touches, each group's part atomic: ``FENCED`` when a
        group holds a newer fence (a newer leader took over), ``NOT_FOLLOWING`` when a group
        does not hold the stamp this invalidator's last step there left (its shard lost steps
        in a failover: the invalidator replays). ``change.expected`` (one server's chain) is
        not used: each group has its own stamp."""
        results = [
            int(r) for r in self._call("invalidate", lambda: self._invalidate_groups(change))
        ]
        if FENCED in results:
            return FENCED
        if NOT_FOLLOWING in results:
            return NOT_FOLLOWING
        if change.position is not None:
            self._applied_position = strip_step(change.position)
        return len(results)

    def _invalidate_groups(self, change: Invalidation) -> list[Any]:
        """One INVALIDATE_GROUP per group the step touches, in one pipeline per shard (by the
        client's slot map); a call that shard redirected (MOVED, ASK) or deferred (TRYAGAIN),
        or every call of a shard that failed, is sent again alone through the cluster client,
        which follows the redirection. A group whose call failed keeps its expected stamp and
        the step is retried whole (replaying is harmless)."""
        name = self.library.function("invalidate_group")
        calls = [(group, *self._group_call(group, change)) for group in self._touched(change)]
        results: list[Any] = [None] * len(calls)
        cluster = cast(Any, self.client)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for n, (_, declared, _, _) in enumerate(calls):
            node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(declared[0]))
            by_node.setdefault(node.name, (node, []))[1].append(n)
        for node, numbers in by_node.values():
            pipe = cluster.get_redis_connection(node).pipeline(transaction=False)
            for n in numbers:
                _, declared, args, _ = calls[n]
                pipe.fcall(name, len(declared), *declared, *args)
            with contextlib.suppress(redis.RedisError):
                for n, result in zip(numbers, pipe.execute(raise_on_error=False), strict=True):
                    results[n] = result
        for n, (group, declared, args, stamp) in enumerate(calls):
            if results[n] is None or isinstance(results[n], _REDIRECTED):
                results[n] = self.client.fcall(name, len(declared), *declared, *args)
            if isinstance(results[n], Exception):
                raise results[n]
            if int(results[n]) >= 0:
                self._stamps[group] = stamp
        return results

    def _group_call(
        self, group: int, change: Invalidation
    ) -> tuple[list[str], list[str | int], str]:
        """INVALIDATE_GROUP's keys and arguments for ``group``'s share of ``change``, every key
        declared, expecting the stamp this invalidator's previous step left there; and the
        stamp this one leaves."""
        keys = self.keys.group(group)
        pages = sorted(p for p in change.pages if self.keys.group_of(p) == group)
        dropped = set(pages)
        from_page = change.from_page if self._shifted(group, change.from_page) else None
        if from_page is not None:
            dropped.update(p for p in self.keys.pages_of(group) if p >= from_page)
        declared = [
            keys.index,
            keys.totals,
            keys.totals_lease,
            keys.binlog_position,
            keys.checkpoint,
            keys.fence,
            keys.gtid,
            keys.stamp,
        ]
        for page in sorted(dropped):
            declared += [keys.page(page), keys.lease(page)]
        args: list[str | int] = Invalidation(
            from_page=from_page,
            totals=change.totals,
            position=change.position,
            checkpoint_ms=change.checkpoint_ms,
            fence=change.fence,
        ).script_args(keys.base, self.hard_ttl)
        stamp = f"{self._term}.{next(self._steps)}"
        expected = self._stamps.get(group, "")
        state = "" if self._past(group, change.position) else change.gtid or ""
        return declared, [*args[:7], expected, state, stamp, *pages], stamp

    def _past(self, group: int, position: str | None) -> bool:
        """Whether ``group`` held a later position of the same stream when this term began
        (this step is a replay there)."""
        held, mine = self._held.get(group), _position(position)
        return held is not None and mine is not None and mine.server == held.server and mine < held

    def claim_fence(self, token: int) -> bool:
        """A new leader's fence in every registered group; False if one holds a newer one."""
        groups = self.registered_groups()

        def take() -> list[Any]:
            return [
                self.run_function("take_fence", [self.keys.group(g).fence], [token]) for g in groups
            ]

        return all(int(taken) for taken in self._call("fence", take))

    def stored_chain(self) -> str | None:
        """The oldest position of the registered groups: everything before it is applied in
        every group. None (start fresh) if a group has none or they are of different streams.
        Read at the start of a term, with each group's stamp (the next step there expects it)."""
        groups = self.registered_groups()
        if not groups:
            return None
        raw = self._call(
            "get",
            lambda: [
                self.client.mget(self.keys.group(g).binlog_position, self.keys.group(g).stamp)
                for g in groups
            ],
        )
        # Where this term starts: each group's stamp as it is now (a step lost from here on is
        # caught by the next step there).
        self._applied_position = None
        self._stamps = {
            g: cast(bytes, stamp).decode()
            for g, (_, stamp) in zip(groups, raw, strict=True)
            if stamp
        }
        self._held = {
            g: held
            for g, (value, _) in zip(groups, raw, strict=True)
            if (held := _position(value)) is not None
        }
        return oldest(cast(bytes, value).decode() if value else None for value, _ in raw)

    def checkpoint(self) -> int | None:
        """The oldest group checkpoint (what every group has applied), or None if a registered
        group has none."""
        groups = self.registered_groups()
        raw = self._call(
            "get", lambda: [self.client.get(self.keys.group(g).checkpoint) for g in groups]
        )
        values = [int(cast(bytes, value)) if value else None for value in raw]
        if not values or None in values:
            return None
        return min(cast(list[int], values))

    # ---- the inspector -------------------------------------------------------------------------
    def read_at(self, page: int) -> tuple[Lookup, int]:
        lookups, now_ms = self.read_block_at(page, 1)
        return lookups[0], now_ms

    def read_block_at(self, first: int, count: int) -> tuple[list[Lookup], int]:
        """Pages ``first``.. (count of them) that share ``first``'s group (the block is cut at
        the group's end), its totals and checkpoint (one MGET in the group's slot), and the
        TIME of the group's primary just before."""
        group_keys = self.keys.of_page(first)
        numbers = range(
            first, min(first + count, self.keys.pages_of(self.keys.group_of(first)).stop)
        )

        def both() -> list[Any]:
            # A cluster pipelines no MGET or TIME: TIME first, of the group's primary, so the
            # moment is never later than the read (an entry looks no older than it is).
            cluster = cast(Any, self.client)
            node = cluster.get_node_from_key(group_keys.index)
            clock = cluster.execute_command("TIME", target_nodes=node)
            found = self.client.mget(
                *(group_keys.page(n) for n in numbers), group_keys.totals, group_keys.checkpoint
            )
            return [found, clock]

        raw, clock = self._call("multi", both)
        return block(numbers, raw, clock)

    def sample_pages(self, count: int) -> list[int]:
        groups = self.registered_groups()
        found: list[int] = []
        for group in groups:
            found.extend(self._sample(self.keys.group(group).index, count))
        return found[:count] if len(found) <= count else _spread(found, count)

    def filled_since(self, since_ms: int) -> list[int]:
        found: list[int] = []
        for group in self.registered_groups():
            keys = self.keys.group(group)
            listed = self._call("zrange", functools.partial(self.client.zrange, keys.index, 0, -1))
            pages = [int(m) for m in cast(list[bytes], listed or [])]
            if pages:
                found += recent(pages, self._mget([keys.page(n) for n in pages]), since_ms)
        return found

    def drop(self, page: int | None) -> None:
        if page is not None:
            self._delete(self.keys.page(page), self.keys.lease(page))
            return
        for group in self.registered_groups():
            self._delete(self.keys.group(group).totals, self.keys.group(group).totals_lease)

    def _delete(self, *keys: str) -> None:
        for key in keys:  # one by one: DEL of several keys must stay in one slot
            self._call("del", lambda key=key: self.client.delete(key))  # type: ignore[misc]

    def _sample(self, index: str, count: int) -> list[int]:
        raw = self._call("zrandmember", lambda: self.client.zrandmember(index, count))
        return [int(member) for member in cast(list[bytes], raw or [])]


def _spread(found: list[int], count: int) -> list[int]:
    step = len(found) / count
    return [found[int(i * step)] for i in range(count)]


def oldest(stored: Iterable[str | None]) -> str | None:
    """The earliest of the groups' stored positions; None when one is missing, unreadable, or
    from another stream (another server's identity) than the others."""
    parsed: list[tuple[BinlogPosition, str]] = []
    for text in stored:
        if not text:
            return None
        try:
            parsed.append((BinlogPosition.parse(strip_step(text)), text))
        except ValueError:
            return None
    if not parsed or len({position.server for position, _ in parsed}) > 1:
        return None
    return min(parsed, key=lambda pair: pair[0])[1]


def _position(value: bytes | str | None) -> BinlogPosition | None:
    """A stored or step position without its step number; None when absent or unreadable."""
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    try:
        return BinlogPosition.parse(strip_step(text))
    except ValueError:
        return None
