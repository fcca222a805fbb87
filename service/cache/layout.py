"""Names of the cache's Redis keys (today's flat layout, or grouped for a Redis Cluster) and the
grouped layout's own scripts (part of the cache protocol; keys.py loads them with the rest).

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

# How every step script records its progress, shared by INVALIDATE (keys.py) and INVALIDATE_GROUP
# (their key expressions differ): ARGV[5] the binlog position; ARGV[6] the checkpoint, refused if
# later than the script's own TIME, else stored if later than the stored one or if that is in
# the future; the stored checkpoint added to the message; ARGV[9] the GTID state ('' keeps the
# stored one), rewritten as ``state|checkpoint`` by every step (keys.py explains why).
_RECORD_PROGRESS = """if ARGV[5] ~= '' then redis.call('SET', @binlog, ARGV[5]) end
local stored = redis.call('GET', @checkpoint)
if ARGV[6] ~= '' then
  local now = redis.call('TIME')
  now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local at = tonumber(ARGV[6])
  local previous = tonumber(stored or '0') or 0
  if at <= now and (at > previous or previous > now) then
    redis.call('SET', @checkpoint, at)
    stored = tostring(at)
  end
end
if stored then message[#message + 1] = 'c' .. stored end
local state = ARGV[9]
if state == '' then state = string.match(redis.call('GET', @gtid) or '', '^[^|]*') end
if state ~= '' then redis.call('SET', @gtid, state .. '|' .. (stored or '')) end
"""


def record_progress(*, binlog: str, checkpoint: str, gtid: str) -> str:
    """The progress-recording Lua for a script whose keys are these Lua expressions."""
    return (
        _RECORD_PROGRESS.replace("@binlog", binlog)
        .replace("@checkpoint", checkpoint)
        .replace("@gtid", gtid)
    )


# The same step for one group of a cluster's grouped layout. Every key it touches is declared,
# so that during a slot migration the cluster redirects (ASK) or defers (TRYAGAIN) the whole
# step instead of running it where only some of the group's keys still are:
#   KEYS[1] index, [2] totals, [3] totals lease, [4] position, [5] checkpoint, [6] fence,
#   [7] gtid, [8] stamp, then (page, lease) pairs: the step's pages and, for a shift, every page
#   of the group from the first shifted one (a group's pages are a known, small set).
#   ARGV as INVALIDATE's (ARGV[1] the group's base, for its shard channel), ARGV[8] the stamp
#   expected before this step ('' = do not check), ARGV[9] the GTID state this step applied
#   ('' = keep the stored one; stored as ``state|checkpoint`` as INVALIDATE does), ARGV[10]
#   this step's stamp, ARGV[11..] the step's own pages (for the message).
# The fence is the newest token this group has seen: a larger one is adopted, a smaller one
# refused (-1); the leader re-takes every group's fence when it takes the lease, and LEASE_AT
# seeds a new group's. Every step leaves its stamp; a stored stamp other than the expected one
# refuses the step (-2, nothing changed): the group's shard lost a step it had acknowledged (a
# failover), and the invalidator replays from the groups' stored positions. The message
# goes out on the group's shard channel (SPUBLISH): only the shard holding the group carries it.
INVALIDATE_GROUP = (
    """
local fence = tonumber(redis.call('GET', KEYS[6]) or '0')
if ARGV[7] ~= '' and fence > tonumber(ARGV[7]) then return -1 end
if ARGV[8] ~= '' and (redis.call('GET', KEYS[8]) or '') ~= ARGV[8] then return -2 end
if ARGV[7] ~= '' and fence < tonumber(ARGV[7]) then redis.call('SET', KEYS[6], ARGV[7]) end
local message = {}
for i = 9, #KEYS, 2 do redis.call('DEL', KEYS[i], KEYS[i + 1]) end
for i = 11, #ARGV do message[#message + 1] = 'p' .. ARGV[i] end
if ARGV[10] ~= '' then redis.call('SET', KEYS[8], ARGV[10]) end
if ARGV[2] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[2], '+inf')
  message[#message + 1] = 'f' .. ARGV[2]
end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[2], KEYS[3])
  message[#message + 1] = 't'
elseif ARGV[3] ~= '-' then
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
  redis.call('DEL', KEYS[3])
  message[#message + 1] = 't'
end
"""
    + record_progress(binlog="KEYS[4]", checkpoint="KEYS[5]", gtid="KEYS[7]")
    + """if #message > 0 then
  redis.call('SPUBLISH', ARGV[1] .. 'invalidations', table.concat(message, ' '))
end
return #message
"""
)

# Grouped layout only. TAKE_FENCE (a group's slot): KEYS[1] the group's fence, ARGV[1] a new
# leader's token; answers 1 if the group now holds it, 0 if it holds a newer one (this leader is
# deposed). (A reader registers a group with ZADD to ``groups`` and GET of the leader's fence in
# one MULTI: a function would need write access to every key it declares, the fence included.)
TAKE_FENCE = """
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
if fence > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


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

    def group_of_channel(self, channel: bytes | str) -> int | None:
        """The group whose shard channel ``channel`` is (None: not one of this namespace's)."""
        name = channel.decode() if isinstance(channel, bytes) else channel
        head = f"{{{self.prefix}:s{self.page_size}:g"
        if not name.startswith(head) or not name.endswith("}:invalidations"):
            return None
        number = name[len(head) : -len("}:invalidations")]
        return int(number) if number.isdigit() else None

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
