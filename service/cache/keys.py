"""The cache protocol: every Redis key, Lua script and pub/sub message layout of the service.

Defined here once; the modules that send commands (``store``, ``near``, ``invalidation.leadership``)
take key names, scripts and message layouts from here and never spell one themselves.

Key space, under ``{prefix}:s{page_size}:`` so deployments, test runs and page sizes never
collide:

  page:{n}     orders of page n: ``fresh_until_ms|etag|<orders JSON array>``; TTL = fresh + stale
  lease:{n}    the token of the one request allowed to fill page n (leases, Facebook NSDI'13 3.2.1)
  totals       ``fresh_until_ms|total_orders``; written by fills and by the invalidator
  lease:totals the fill lease of ``totals``
  index        sorted set of page numbers that have (or had) an entry or a lease: a shift
               invalidation finds the pages after a point without scanning the key space
  binlog       the invalidator's binlog position (and server identity, step number), stored
               atomically with its invalidations
  invalidator:lease  the active invalidator's lease (``owner:token``, TTL renewed)
  invalidator:fence  the newest fencing token (INCR); INVALIDATE checks it
  checkpoint   Redis-clock ms: every change committed to MySQL before it has been applied
  gtid         the GTID state of the invalidator's last drop (``-``: read the primary), handed
               out with each fill lease: a replica serves a fill only once it has applied it
  config       HASH of the settings the API runs with (``ttl``, ``page_size``, ``max_lag``,
               ``prefix``), so an invalidator can follow the API's, and mismatches show
  hot          sorted set: the pages readers asked for most in the last half second (each API
               worker publishes its top ones; TTL 10 s): what the inspector samples first
  inspector:found  Redis-clock ms of the inspector's last confirmed inconsistency (TTL 10 min):
               ``/readyz`` says inconsistencies were found in the last minutes
  invalidations  pub/sub channel: what was invalidated, for the workers' near caches (the
               message format is ``Message`` below; the Lua script writes it, Python reads it)

Control keys (index, binlog, checkpoint, gtid, config, invalidator:fence) carry no TTL, so Redis'
``volatile-lru`` never evicts them; entries and leases carry TTLs and may be evicted safely.

On a Redis Cluster the pages are grouped (``service/cache/layout.py``): each group's keys share one
hash tag, ``INVALIDATE_GROUP`` is the step for one group, ``groups`` lists the groups in use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from service.cache.entries import TotalsEntry
from service.cache.layout import (
    INVALIDATE_GROUP,
    TAKE_FENCE,
    CacheKeys,
    GroupKeys,
    record_progress,
)

# The key names and the grouped layout's scripts live in layout.py, re-exported here.
__all__ = ["INVALIDATE_GROUP", "TAKE_FENCE", "CacheKeys", "GroupKeys"]

# Take the lease if free (the page noted in the index, for shifts) and answer Redis' clock (ms),
# 0 if taken: the filler stamps the entry it reads next with it (``read_ms``, the checkpoint's
# clock, no offset estimate). With it come ``gtid`` and ``checkpoint`` (their names in ARGV[5],
# ARGV[6]: FCALL's KEYS count as written, and the API may only read them; '' if absent), one
# atomic view: a fill reads a replica only once it applied that state, and then claims only that
# checkpoint as its read time (docs/guarantees.md, "MySQL replicas"). On a cluster KEYS[3] is the
# page's group's fence and ARGV[4] the leader's fence read when the group was registered ('' on
# one server): a new group never holds an older one; ARGV[5], ARGV[6] are then the group's keys.
LEASE_AT = """
if KEYS[3] and ARGV[4] ~= '' then
  if tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[4]) then
    redis.call('SET', KEYS[3], ARGV[4])
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3]) end
  local now = redis.call('TIME')
  local checkpoint = redis.call('GET', ARGV[6]) or ''
  local gtid, vouched = string.match(redis.call('GET', ARGV[5]) or '', '^([^|]*)|(.*)$')
  if vouched ~= checkpoint then gtid = '' end
  return {tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), gtid, checkpoint}
end
return {0, '', ''}
"""

# Store the entry only if our lease is live: an invalidation since it was taken deleted it.
FILL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# One invalidation, atomic with the binlog position that produced it. The arguments are laid out
# by ``Invalidation.script_args`` (the only writer of this layout):
#   ARGV[1] key prefix, ARGV[2] first page of a shift ('' = none),
#   ARGV[3] totals: '-' keep, '' drop, otherwise the new encoded entry; ARGV[4] totals TTL seconds,
#   ARGV[5] binlog position ('' = keep),
#   ARGV[6] checkpoint, Redis-clock ms ('' = none): everything committed before it is applied
#           once this step is (service/invalidation/checkpoint.py computes it from a TIME reading
#           of this attempt). Refused if later than the script's own TIME (a reading from another
#           clock); otherwise stored if later than the stored one, or if the stored one is itself
#           in the future (a restore, a failover, a clock step, or forged): then it moves back.
#           Every message carries the stored checkpoint, so a worker that missed one learns it,
#   ARGV[7] fencing token ('' = none): the step applies only while ``invalidator:fence`` still
#           holds this token, so an invalidator that lost its lease (paused, partitioned) can
#           apply nothing after a newer one took over; a fenced step changes nothing, returns -1,
#   ARGV[8] the ``binlog`` value this step follows ('' = unchecked), as the previous step wrote
#           it (every step writes one: position and step number). Another value (a replica that
#           missed the last steps was promoted) refuses the step: nothing changes, returns -2,
#           the invalidator replays (docs/guarantees.md, "Redis failover (Sentinel)"),
#   ARGV[9] the GTID state applied by this step ('' = keep the stored one): written with the
#           deletions, so a lease taken after them hands out a state including their write.
#           ``gtid`` holds ``state|checkpoint``: every step rewrites it with the checkpoint it
#           leaves, vouching that the state covers every page-changing commit before it; a
#           checkpoint moved on by anything else (an earlier release's step) is not vouched
#           for, and LEASE_AT then hands out no state (the fill reads the primary),
#   ARGV[10..] single pages.
# It deletes entries and leases, then publishes what it did (``Message``) for the near caches.
INVALIDATE = (
    """
local prefix = ARGV[1]
if ARGV[7] ~= '' and redis.call('GET', prefix .. 'invalidator:fence') ~= ARGV[7] then
  return -1
end
if ARGV[8] ~= '' and redis.call('GET', prefix .. 'binlog') ~= ARGV[8] then
  return -2
end
local index = prefix .. 'index'
local message = {}
for i = 10, #ARGV do
  redis.call('DEL', prefix .. 'page:' .. ARGV[i], prefix .. 'lease:' .. ARGV[i])
  message[#message + 1] = 'p' .. ARGV[i]
end
if ARGV[2] ~= '' then
  local pages = redis.call('ZRANGEBYSCORE', index, ARGV[2], '+inf')
  for start = 1, #pages, 500 do
    local batch = {}
    for j = start, math.min(start + 499, #pages) do
      batch[#batch + 1] = prefix .. 'page:' .. pages[j]
      batch[#batch + 1] = prefix .. 'lease:' .. pages[j]
    end
    redis.call('DEL', unpack(batch))
  end
  redis.call('ZREMRANGEBYSCORE', index, ARGV[2], '+inf')
  message[#message + 1] = 'f' .. ARGV[2]
end
if ARGV[3] == '' then
  redis.call('DEL', prefix .. 'totals', prefix .. 'lease:totals')
  message[#message + 1] = 't'
elseif ARGV[3] ~= '-' then
  redis.call('SET', prefix .. 'totals', ARGV[3], 'EX', ARGV[4])
  redis.call('DEL', prefix .. 'lease:totals')
  message[#message + 1] = 't'
end
"""
    + record_progress(
        binlog="prefix .. 'binlog'", checkpoint="prefix .. 'checkpoint'", gtid="prefix .. 'gtid'"
    )
    + """if #message > 0 then
  redis.call('PUBLISH', prefix .. 'invalidations', table.concat(message, ' '))
end
return #message
"""
)


# The invalidators' lease (one active, the others standing by). ACQUIRE takes a free lease and
# hands out the next fencing token (INCR, so a newer leader always holds a larger one):
#   KEYS[1] lease, KEYS[2] fence; ARGV[1] owner id, ARGV[2] lease TTL ms. Returns the token or 0.
# RENEW extends the lease only for its owner (ARGV[1] = 'owner:token'); RELEASE drops it likewise.
ACQUIRE_LEASE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
  return token
end
return 0
"""
# REFENCE: after a failover the leader takes a new token on the new primary if the lease is its
# own there (KEYS as ACQUIRE; ARGV: 'owner:token', owner, TTL ms). Returns it, or 0.
REFENCE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[2] .. ':' .. token, 'PX', ARGV[3])
  return token
end
return 0
"""
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# The scripts as one Redis 7 FUNCTION library: application users may FCALL them but load no
# Lua (no EVAL, SCRIPT, FUNCTION LOAD: arbitrary code, memory outside maxmemory); a privileged
# user loads it (`orders-service load-functions`, the chart's Redis at start). A function runs
# with its caller's ACL; KEYS and ARGV as under EVAL; ``allow-oom`` lets the steps that free
# memory (INVALIDATE, RELEASE_LEASE) run when Redis is full.
FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lease_at": (LEASE_AT, ()),
    "fill": (FILL, ()),
    "invalidate": (INVALIDATE, ("allow-oom",)),
    "acquire_lease": (ACQUIRE_LEASE, ()),
    "renew_lease": (RENEW_LEASE, ()),
    "refence_lease": (REFENCE_LEASE, ()),
    "release_lease": (RELEASE_LEASE, ("allow-oom",)),
    "invalidate_group": (INVALIDATE_GROUP, ("allow-oom",)),
    "take_fence": (TAKE_FENCE, ()),
}
LIBRARY_PREFIX = "orders_"


@dataclass(frozen=True)
class FunctionLibrary:
    """The library's name and source. The name carries a hash of the source, and so does every
    function's name (they are global in Redis): during a rolling upgrade the old release's
    library and the new one are loaded side by side, each pod calling its own."""

    name: str
    source: str

    def function(self, short: str) -> str:
        """The name FCALL takes for one of ``FUNCTIONS``."""
        return f"{self.name}_{short}"


def function_library(preamble: str = "") -> FunctionLibrary:
    """The library as ``FUNCTION LOAD`` takes it (``preamble``: Lua comments, for tests)."""
    body = preamble + "".join(
        f"redis.register_function{{function_name='@_{short}', flags={{{_lua_list(flags)}}}, "
        f"callback=function(KEYS, ARGV)\n{script.strip()}\nend}}\n"
        for short, (script, flags) in FUNCTIONS.items()
    )
    name = LIBRARY_PREFIX + hashlib.sha256(body.encode()).hexdigest()[:12]
    return FunctionLibrary(name, f"#!lua name={name}\n" + body.replace("'@_", f"'{name}_"))


def _lua_list(items: tuple[str, ...]) -> str:
    return ", ".join(f"'{item}'" for item in items)


LIBRARY = function_library()


@dataclass(frozen=True)
class Keep:
    """Leave the cached totals as they are."""


@dataclass(frozen=True)
class Drop:
    """Delete the cached totals (and their lease): the next read recounts."""


@dataclass(frozen=True)
class SetTotals:
    """Replace the cached totals with a count the invalidator just made."""

    entry: TotalsEntry


TotalsChange = Keep | Drop | SetTotals
KEEP, DROP = Keep(), Drop()


@dataclass(frozen=True)
class Invalidation:
    """One atomic step of the INVALIDATE script: what to drop, the totals, and the progress it
    records (binlog position, checkpoint in Redis' clock)."""

    pages: frozenset[int] = frozenset()
    from_page: int | None = None
    totals: TotalsChange = KEEP
    position: str | None = None
    checkpoint_ms: int | None = None
    fence: int | None = None
    expected: str | None = None  # the stored position this step follows (None: unchecked)
    gtid: str | None = None  # the GTID state this step applied (None: leave it)

    def script_args(self, base: str, totals_ttl: int) -> list[str | int]:
        """ARGV for INVALIDATE, in the layout its comment documents."""
        match self.totals:
            case Keep():
                totals_arg = "-"
            case Drop():
                totals_arg = ""
            case SetTotals(entry):
                totals_arg = entry.encode().decode()
        return [
            base,
            "" if self.from_page is None else self.from_page,
            totals_arg,
            totals_ttl,
            self.position or "",
            "" if self.checkpoint_ms is None else self.checkpoint_ms,
            "" if self.fence is None else self.fence,
            self.expected or "",
            self.gtid or "",
            *sorted(self.pages),
        ]


STEP_FIELD = "|step="  # a ``binlog`` value: the position, then the number of the step


def with_step(position: str, step: int) -> str:
    return f"{strip_step(position)}{STEP_FIELD}{step}"


def strip_step(stored: str) -> str:
    head, _, rest = stored.partition(STEP_FIELD)
    return f"{head}|{rest.partition('|')[2]}" if "|" in rest else head


@dataclass(frozen=True)
class Message:
    """One message on the invalidations channel, as INVALIDATE publishes it: space-separated
    tokens ``p<n>`` (page n), ``f<n>`` (every page from n), ``t`` (totals), ``c<ms>`` (the
    checkpoint, Redis clock)."""

    pages: frozenset[int] = frozenset()
    from_page: int | None = None
    totals: bool = False
    checkpoint_ms: int | None = None

    @classmethod
    def parse(cls, raw: bytes) -> Message:
        pages: set[int] = set()
        from_page: int | None = None
        totals = False
        checkpoint: int | None = None
        for token in raw.split():
            kind, number = token[:1], token[1:]
            if kind == b"p":
                pages.add(int(number))
            elif kind == b"f":
                first = int(number)
                from_page = first if from_page is None else min(from_page, first)
            elif kind == b"t":
                totals = True
            elif kind == b"c":
                checkpoint = int(number)
            else:
                raise ValueError(f"unknown token in invalidation message: {token!r}")
        return cls(frozenset(pages), from_page, totals, checkpoint)

    def encode(self) -> bytes:
        """The bytes INVALIDATE would publish for this message (tests check the two agree)."""
        tokens = [f"p{page}" for page in sorted(self.pages)]
        if self.from_page is not None:
            tokens.append(f"f{self.from_page}")
        if self.totals:
            tokens.append("t")
        if self.checkpoint_ms is not None:
            tokens.append(f"c{self.checkpoint_ms}")
        return " ".join(tokens).encode()
