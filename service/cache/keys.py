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
  binlog       the invalidator's binlog position (and server identity), stored atomically
               with its invalidations
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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from service.cache.entries import TotalsEntry

# Take the lease only if nobody holds it (remembering the page in the index so shifts can find
# it), and answer Redis' clock (ms) when the lease is taken, 0 otherwise: the filler stamps
# the entry it is about to read from MySQL with it (``read_ms``), in the same clock as the
# checkpoint, with no offset estimate involved. With it come ``gtid`` and ``checkpoint`` (ARGV[4],
# ARGV[5]: FCALL's KEYS count as written, and the API may only read them; '' if absent), one
# atomic view: a fill reads a replica only once it applied that state, and then claims only
# that checkpoint as its read time (docs/guarantees.md, "MySQL replicas").
LEASE_AT = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3]) end
  local now = redis.call('TIME')
  local gtid = redis.call('GET', ARGV[4]) or ''
  local checkpoint = redis.call('GET', ARGV[5]) or ''
  return {tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), gtid, checkpoint}
end
return {0, '', ''}
"""

# The conditional store: write the entry only if our lease is still the live one. Any invalidation
# since the lease was taken deleted it, so a page read before a write committed is never stored.
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
#   ARGV[8] the stored position this step expects before it ('' = do not check; reserved),
#   ARGV[9] the GTID state applied by this step ('' = leave ``gtid``): written with the
#           deletions, so a lease taken after them hands out a state including their write,
#   ARGV[10..] single pages.
# It deletes entries and leases, then publishes what it did (``Message``) for the near caches.
INVALIDATE = """
local prefix = ARGV[1]
if ARGV[7] ~= '' and redis.call('GET', prefix .. 'invalidator:fence') ~= ARGV[7] then
  return -1
end
local index = prefix .. 'index'
local message = {}
if ARGV[9] ~= '' then redis.call('SET', prefix .. 'gtid', ARGV[9]) end
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
if ARGV[5] ~= '' then redis.call('SET', prefix .. 'binlog', ARGV[5]) end
local stored = redis.call('GET', prefix .. 'checkpoint')
if ARGV[6] ~= '' then
  local now = redis.call('TIME')
  now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local at = tonumber(ARGV[6])
  local previous = tonumber(stored or '0') or 0
  if at <= now and (at > previous or previous > now) then
    redis.call('SET', prefix .. 'checkpoint', at)
    stored = tostring(at)
  end
end
if stored then message[#message + 1] = 'c' .. stored end
if #message > 0 then
  redis.call('PUBLISH', prefix .. 'invalidations', table.concat(message, ' '))
end
return #message
"""


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


# The scripts above, as one Redis 7 FUNCTION library: the application's Redis users may call
# them (FCALL) but load no Lua of their own (no EVAL, SCRIPT or FUNCTION LOAD: arbitrary code,
# whose memory is outside maxmemory). A privileged user loads the library (`orders-service
# load-functions`, or the chart's Redis at start). A function runs with its caller's ACL, so the
# API calling the invalidator's functions can still write nothing it may not write itself.
# Each body sees its keys and arguments as KEYS and ARGV, as under EVAL; ``allow-oom`` lets
# the steps that free memory (INVALIDATE deletes, RELEASE_LEASE) run when Redis is full.
FUNCTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lease_at": (LEASE_AT, ()),
    "fill": (FILL, ()),
    "invalidate": (INVALIDATE, ("allow-oom",)),
    "acquire_lease": (ACQUIRE_LEASE, ()),
    "renew_lease": (RENEW_LEASE, ()),
    "release_lease": (RELEASE_LEASE, ("allow-oom",)),
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


class Keep:
    """Leave the cached totals as they are."""

    def __repr__(self) -> str:
        return "Keep()"


class Drop:
    """Delete the cached totals (and their lease): the next read recounts."""

    def __repr__(self) -> str:
        return "Drop()"


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
    expected_position: str | None = None
    gtid: str | None = None

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
            self.expected_position or "",
            self.gtid or "",
            *sorted(self.pages),
        ]


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


@dataclass(frozen=True)
class CacheKeys:
    """Names of the service's Redis keys for one namespace and page size."""

    prefix: str
    page_size: int

    @property
    def base(self) -> str:
        return f"{self.prefix}:s{self.page_size}:"

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
    def checkpoint(self) -> str:
        return f"{self.base}checkpoint"

    @property
    def gtid(self) -> str:
        """The GTID state of the invalidator's last drop: what a replica fill waits for."""
        return f"{self.base}gtid"

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
    def channel(self) -> str:
        return f"{self.base}invalidations"

    @property
    def pattern(self) -> str:
        """Matches every key of this namespace (for tests and tooling that clean up)."""
        return f"{self.base}*"
