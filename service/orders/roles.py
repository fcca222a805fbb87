"""Least privilege: what each role may do in MySQL and in Redis, declared once.

Three roles share a deployment: ``api`` serves pages (reads only), ``invalidator`` follows the
binlog and writes its heartbeat, ``migrate`` changes the schema and seeds; ``replica`` is the
API's user on a read replica (MySQL only). ``grants`` gives the
MySQL GRANT statements and ``redis_acl`` the Redis ACL rules of a role; ``make run``
(hack/dev-mysql.sh) applies what ``orders-service grants`` prints, and tests/security exercises
them on a real MariaDB and a real Redis. A new query or Redis command
that a role needs must be added here, or that role fails in production: the tests say so first.
"""

from __future__ import annotations

import re

ROLES = ("api", "invalidator", "migrate")
# A read replica's user (ORDERS_DATABASE_REPLICA_URLS): MySQL grants only, on each replica.
REPLICA = "replica"
# The invalidator's liveness row (written by it, in a table its migration creates).
HEARTBEAT_TABLE = "heartbeat"
COUNTS_TABLE = "order_buckets"  # the block counts: written by the triggers and the recounts

# REPLICATION CLIENT is BINLOG MONITOR on MariaDB 10.5+ (an alias): SHOW MASTER STATUS and
# SHOW BINARY LOGS. REPLICATION SLAVE: the binlog dump itself. Both exist only on *.*: the
# invalidator can read every database's row changes on the server (docs/security.md, "Roles":
# give the service a MySQL of its own, or filter the binlog to its database).
_REPLICATION = "REPLICATION SLAVE, REPLICATION CLIENT"
# Schema changes and seeding, on the one database only; no GRANT OPTION, nothing global.
_MIGRATE = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, TRIGGER, REFERENCES, "
    "CREATE VIEW, SHOW VIEW, LOCK TABLES, CREATE TEMPORARY TABLES"
)

# Redis commands per role: the ones its code sends (service/cache/store.py, near.py) and the ones
# its functions call (service/cache/keys.py; Redis checks a function's calls against the caller's
# ACL too). FCALL runs the functions; no role may EVAL, SCRIPT or FUNCTION LOAD (arbitrary Lua,
# outside maxmemory): a Redis admin loads the library (`orders-service load-functions`).
# Not CLIENT SETINFO: redis-py tries it on connect and ignores the refusal (Redis 7.0 lacks it).
# INFO (not CONFIG, whose GET would show requirepass): the maxmemory-policy check at start-up
# and in /readyz (service/cache/eviction.py), and the primary's identity (run and replication
# ids: a failover noticed); ROLE: a Sentinel client's check that it reached a primary.
_REDIS_COMMON = ("ping", "fcall", "get", "set", "del", "time", "info", "role")
REDIS_COMMANDS: dict[str, tuple[str, ...]] = {
    # reads (MGET page+totals+checkpoint, alone or with TIME in a MULTI), leases and fills
    # (lease_at: SET NX, ZADD, TIME; fill: GET, SET, DEL), the near cache's feed (SUBSCRIBE,
    # PING, TIME + GET checkpoint) and the shared settings it publishes (HSET config); the
    # consistency inspector runs as this user too (ZRANDMEMBER of the index, ZRANGE of the hot
    # pages; its repairs DEL the entry, and tell the near caches only where its user may
    # PUBLISH, which this one may not: a forged message could vouch for stale near-cache
    # entries); the hot pages each worker publishes (ZADD, ZREMRANGEBYRANK, PEXPIRE).
    "api": (
        *_REDIS_COMMON,
        "zrange",
        "zremrangebyrank",
        "pexpire",
        "mget",
        "multi",
        "exec",
        "zadd",
        "zrandmember",
        "hset",
        "subscribe",
        "unsubscribe",
    ),
    # the stored position (GET), the shared settings it follows (HGET config), the invalidate
    # function (DEL, ZRANGEBYSCORE, ZREMRANGEBYSCORE, SET, GET checkpoint and fence, TIME,
    # PUBLISH) and the leadership functions (SET NX PX, INCR the fence, PEXPIRE, DEL).
    "invalidator": (
        *_REDIS_COMMON,
        "hget",
        "zrangebyscore",
        "zremrangebyscore",
        "publish",
        "incr",
        "pexpire",
    ),
}
# Keys each role may write (Redis 7 key selectors), as patterns under ``{prefix}:s{page size}:``
# (service/cache/keys.py names them); every other key under the prefix is read-only to it. The
# API cannot write the checkpoint, the binlog position, the fence or the invalidator's lease, so
# a compromised API pod cannot make the cache's freshness say what is not true.
REDIS_WRITES: dict[str, tuple[str, ...]] = {
    # ``hot`` and ``inspector:found``: the pages each worker reports as most read and the
    # inspector's last confirmed inconsistency, written by the API's user where they are kept.
    "api": ("page:*", "lease:*", "index", "totals", "config", "hot", "inspector:found"),
    "invalidator": (
        *("page:*", "lease:*", "index", "totals"),
        *("binlog", "checkpoint", "gtid", "invalidator:lease", "invalidator:fence"),
    ),
}
# On a Redis Cluster (grouped layout, service/cache/layout.py) the keys sit under hash tags: the
# singletons under ``{prefix:sN}:``, each group's under ``{prefix:sN:gG}:``. The API also
# registers groups (``groups``) and seeds a new group's fence to the leader's (LEASE_AT); it
# cannot lower a fence (LEASE_AT only raises it), though its user could SET one directly: that
# can stop invalidation (steps refused), which the checkpoint then shows and the lag bound
# covers, but never makes the checkpoint vouch for what is not true. The cluster client asks
# the slot map (CLUSTER SLOTS/SHARDS; NODES: which primaries, to notice a failover), the command
# table (COMMAND) and follows ASK (ASKING). The API's near caches hear each group's shard
# channel (SSUBSCRIBE, SUNSUBSCRIBE); only the invalidator's steps SPUBLISH.
_CLUSTER_COMMANDS = ("cluster|slots", "cluster|shards", "cluster|nodes", "command", "asking")
REDIS_CLUSTER_COMMANDS: dict[str, tuple[str, ...]] = {
    "api": (*_CLUSTER_COMMANDS, "ssubscribe", "sunsubscribe"),
    "invalidator": (*_CLUSTER_COMMANDS, "spublish", "zrange", "mget"),
}
REDIS_CLUSTER_WRITES: dict[str, tuple[str, ...]] = {
    "api": ("page:*", "lease:*", "index", "totals", "invalidator:fence"),
    "invalidator": (
        *("page:*", "lease:*", "index", "totals", "binlog", "checkpoint"),
        *("invalidator:fence", "gtid", "stamp"),
    ),
}
REDIS_CLUSTER_CONTROL_WRITES: dict[str, tuple[str, ...]] = {
    "api": ("config", "hot", "inspector:found", "groups"),
    "invalidator": ("invalidator:lease", "invalidator:fence"),
}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOST = re.compile(r"[A-Za-z0-9_.%:-]{1,255}")  # 127.0.0.1, %, 10.0.%, db.example


def _checked(kind: str, value: str, pattern: re.Pattern[str] = _NAME) -> str:
    """Names go into statements as identifiers: allow only characters that need no quoting."""
    if not pattern.fullmatch(value):
        raise ValueError(f"{kind} {value!r}: use letters, digits, '_', '.' or '-'")
    return value


def grants(role: str, user: str, database: str, host: str = "%") -> list[str]:
    """The GRANT statements of ``role`` for ``'user'@'host'`` on ``database``.

    The invalidator's heartbeat grant names a table, which MySQL requires to exist: apply the
    invalidator's grants after ``orders-service migrate``.
    """
    account = f"'{_checked('user', user)}'@'{_checked('host', host, _HOST)}'"
    schema = f"`{_checked('database', database)}`"
    if role == "api":
        return [f"GRANT SELECT ON {schema}.* TO {account}"]
    if role == "invalidator":
        return [
            f"GRANT {_REPLICATION} ON *.* TO {account}",
            # Reads, its heartbeat and the block counts it rebuilds after a TRUNCATE (a
            # transaction, no LOCK TABLES). No TRIGGER or LOCK TABLES: it could drop or add the
            # counting triggers, or lock the table; missing triggers and tables are reported, and
            # `orders-service migrate` restores them as the migrate role.
            f"GRANT SELECT ON {schema}.* TO {account}",
            f"GRANT INSERT, UPDATE, DELETE ON {schema}.`{HEARTBEAT_TABLE}` TO {account}",
            f"GRANT INSERT, UPDATE, DELETE ON {schema}.`{COUNTS_TABLE}` TO {account}",
        ]
    if role == "migrate":
        return [f"GRANT {_MIGRATE} ON {schema}.* TO {account}"]
    if role == "replica":
        # The API's user on a read replica (ORDERS_DATABASE_REPLICA_URLS): pages, totals and the
        # heartbeat its lag is measured by. MASTER_GTID_WAIT / WAIT_FOR_EXECUTED_GTID_SET need no
        # privilege; nothing of the binlog (no REPLICATION grant). A replica replays the
        # primary's GRANTs, so the API's user usually exists there already.
        return [f"GRANT SELECT ON {schema}.* TO {account}"]
    raise ValueError(f"unknown role {role!r}; one of {', '.join((*ROLES, REPLICA))}")


def redis_acl(role: str, user: str, prefix: str, *, cluster: bool = False) -> list[str]:
    """The ACL rules of ``role``, as ``ACL SETUSER user <rules...>`` (or redis.conf's ``user``)
    takes them: reads of every key under ``prefix:``, writes of ``REDIS_WRITES`` only, pub/sub
    channels under ``prefix:``, only the commands the role sends (Redis 7.0+: ``%R~``). A key a
    command both reads and writes (FCALL's keys) needs one pattern with both, hence ``~`` for
    the writable ones. The rules start with ``reset``, so append the password after them.
    ``cluster``: the grouped layout's keys and the cluster client's commands (set the user on
    every node: a cluster does not share ACLs)."""
    if role not in REDIS_COMMANDS:
        raise ValueError(f"role {role!r} has no Redis user; one of {', '.join(REDIS_COMMANDS)}")
    if any(c in prefix for c in "*?[]\\") or not prefix or " " in prefix:
        raise ValueError(f"prefix {prefix!r}: no spaces or glob characters")
    _checked("user", user)
    if cluster:
        keys = [
            f"%R~{{{prefix}:*",
            *(f"~{{{prefix}:s*:g*}}:{p}" for p in REDIS_CLUSTER_WRITES[role]),
            *(f"~{{{prefix}:s*}}:{p}" for p in REDIS_CLUSTER_CONTROL_WRITES[role]),
            f"&{{{prefix}:*",
        ]
        commands = (*REDIS_COMMANDS[role], *REDIS_CLUSTER_COMMANDS[role])
    else:
        keys = [
            f"%R~{prefix}:*",
            *(f"~{prefix}:s*:{pattern}" for pattern in REDIS_WRITES[role]),
            f"&{prefix}:*",
        ]
        commands = REDIS_COMMANDS[role]
    return ["reset", "on", *keys, "-@all", *(f"+{command}" for command in dict.fromkeys(commands))]


# What a client of the Sentinels sends them (redis-py's discovery: SENTINEL MASTERS, and PING
# when it checks a connection); HELLO and AUTH need no rule. A Sentinel has no keys.
SENTINEL_COMMANDS = ("ping", "sentinel|masters", "sentinel|get-master-addr-by-name")


def sentinel_acl(user: str) -> list[str]:
    """The ACL rules of the user the service asks the Sentinels as (``ACL SETUSER`` on each
    Sentinel, its password in ORDERS_REDIS_SENTINEL_PASSWORD): discovery only, so it can
    neither reconfigure nor fail over anything."""
    _checked("user", user)
    return ["reset", "on", "-@all", *(f"+{command}" for command in SENTINEL_COMMANDS)]
