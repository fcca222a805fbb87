"""Every Redis key and Lua script of the service. Nothing else knows the Redis dialect.

Key space, under ``{prefix}:s{page_size}:`` so deployments, test runs and page sizes never
collide:

  page:{n}     orders of page n: ``fresh_until_ms|etag|<orders JSON array>``; TTL = fresh + stale
  lease:{n}    the token of the one request allowed to fill page n (leases, Facebook NSDI'13 3.2.1)
  totals       ``fresh_until_ms|total_orders``; written by fills and by the invalidator
  lease:totals the fill lease of ``totals``
  index        sorted set of page numbers that have (or had) an entry or a lease: a shift
               invalidation finds the pages after a point without scanning the key space
  binlog       the invalidator's binlog position, stored atomically with its invalidations
  invalidations  pub/sub channel: what was invalidated, for the workers' near caches

Control keys (index, binlog) carry no TTL, so Redis' ``volatile-lru`` never evicts them; entries and
leases carry TTLs and may be evicted safely.
"""

from __future__ import annotations

from dataclasses import dataclass

# Take the lease only if nobody holds it; remember the page in the index so shifts can find it.
LEASE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3]) end
  return 1
end
return 0
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

# One invalidation, atomic with the binlog position that produced it:
#   ARGV[1] key prefix, ARGV[2] first page of a shift ('' = none),
#   ARGV[3] new totals value ('' = delete totals, '-' = keep), ARGV[4] totals TTL seconds,
#   ARGV[5] binlog position ('' = keep), ARGV[6..] single pages.
# It deletes entries and leases, then publishes what it did for the near caches.
INVALIDATE = """
local prefix = ARGV[1]
local index = prefix .. 'index'
local message = {}
for i = 6, #ARGV do
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
if #message > 0 then
  redis.call('PUBLISH', prefix .. 'invalidations', table.concat(message, ' '))
end
return #message
"""


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
    def channel(self) -> str:
        return f"{self.base}invalidations"

    @property
    def pattern(self) -> str:
        """Matches every key of this namespace (for tests and tooling that clean up)."""
        return f"{self.base}*"
