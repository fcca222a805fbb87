"""Redis access for the cache: short timeouts, no retries, a circuit breaker, and leases.

Every call either answers within ``ORDERS_CACHE_TIMEOUT`` or raises ``CacheUnavailable``, which the
caller treats as a miss: Redis is an optimisation, never a reason to fail a request.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis
import structlog

from service.breaker import CircuitBreaker
from service.cache import topology
from service.cache.entries import PageEntry, TotalsEntry
from service.cache.keys import LIBRARY, CacheKeys, FunctionLibrary, Invalidation, strip_step
from service.cache.replies import Lease, Lookup, block, lease_answer, lookup, recent
from service.config import RedisURL
from service.observability import metrics

T = TypeVar("T")
_log = structlog.get_logger(__name__)
LEASE_MS = 3000  # longer than any fill (MySQL timeouts are below one second)
SCAN_BATCH = 500  # pages per MGET of a scan
FOUND_KEEP_MS = 600_000  # how long /readyz reports a confirmed inconsistency ("the last minutes")


FENCED = -1  # INVALIDATE: a newer invalidator holds the fence
NOT_FOLLOWING = -2  # INVALIDATE: the stored position is not the one the step follows


class CacheUnavailable(Exception):
    """Redis failed, timed out, or the breaker is open. Callers fall back to MySQL."""


class FunctionsNotLoaded(Exception):
    """The cache's function library is not in Redis and this user may not load it."""


def load_functions(client: redis.Redis, library: FunctionLibrary = LIBRARY) -> str:
    """Load ``library`` (idempotent: loading the same version again changes nothing); needs a
    Redis user allowed ``FUNCTION LOAD``, which no application role is. Returns its name."""
    if isinstance(cast(object, client), redis.RedisCluster):
        # FUNCTION LOAD reaches one node; each primary needs the library (replicas copy it).
        cluster = cast(Any, client)
        for node in cluster.get_primaries():
            _load_on(cluster, node, library.source)
        return library.name
    _load_once(lambda: client.function_load(library.source))
    return library.name


def _load_on(cluster: Any, node: Any, source: str) -> None:
    _load_once(lambda: cluster.execute_command("FUNCTION", "LOAD", source, target_nodes=node))


def _load_once(load: Callable[[], object]) -> None:
    try:
        load()
    except redis.ResponseError as exc:
        if "already exists" not in str(exc):
            raise


def failure_reason(exc: BaseException) -> str:
    """What failed, without what the server said: an error reply's text comes from whoever
    answers on Redis' address, so only its kind (``NoPermissionError``) is kept; connection
    failures and timeouts are described by redis-py itself and are kept whole."""
    if isinstance(exc, FunctionsNotLoaded):
        return str(exc)
    if isinstance(exc, redis.ResponseError | redis.AuthenticationError):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def redis_client(url: RedisURL, timeout: float | None, **options: Any) -> redis.Redis:
    """A client of ``url``'s topology that gives up after ``timeout`` seconds and never retries
    on its own (the seam: service/cache/topology.py)."""
    return topology.client(url, timeout, **options)


class RedisCache:
    """The cache's Redis operations, each one round trip, guarded by the breaker."""

    def __init__(
        self, client: redis.Redis, keys: CacheKeys, breaker: CircuitBreaker, *, hard_ttl: int
    ) -> None:
        self.keys = keys
        self.client = client
        self.breaker = breaker
        self.hard_ttl = hard_ttl  # seconds an entry lives: fresh for the TTL, then stale
        self.library = LIBRARY

    def _call(self, command: str, operation: Callable[[], T]) -> T:
        if not self.breaker.allow():
            raise CacheUnavailable("circuit open")
        started = time.perf_counter()
        try:
            result = operation()
        except Exception as exc:  # noqa: BLE001 - redis-py raises more than RedisError on bad replies
            metrics.observe_redis_call(command, time.perf_counter() - started, ok=False)
            self.breaker.failure()
            raise CacheUnavailable(failure_reason(exc)) from None
        metrics.observe_redis_call(command, time.perf_counter() - started, ok=True)
        self.breaker.success()
        return result

    def client_call(self, command: str, operation: Callable[[], T]) -> T:
        """One call of a script another module owns (the invalidator's lease), through the
        breaker and the metrics like every other call."""
        return self._call(command, operation)

    def run_function(self, short: str, keys: list[str], args: list[Any]) -> Any:
        """FCALL one of the library's functions (``keys.FUNCTIONS``). A Redis without the
        library (restarted without persistence, never loaded) gets it loaded here when this
        user may (a development Redis' default user); the application roles may not, and then
        the call fails naming the command that loads it."""
        name = self.library.function(short)
        try:
            return self.client.fcall(name, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            if "function not found" not in str(exc).lower():
                raise
        try:
            load_functions(self.client, self.library)
        except redis.exceptions.NoPermissionError:
            missing = FunctionsNotLoaded(
                f"the cache's Redis functions ({self.library.name}) are not loaded and this "
                "Redis user may not load them: run `orders-service load-functions` with a "
                "Redis admin's URL"
            )
            _log.error(str(missing))  # the breaker then spaces these out (one per trial)
            raise missing from None
        return self.client.fcall(name, len(keys), *keys, *args)

    def read(self, page: int) -> Lookup:
        """The page's entry, the totals and the checkpoint, in one round trip (one MGET, so the
        three are one atomic view: an entry present is current as of the checkpoint read)."""
        raw_page, raw_totals, raw_checkpoint = self._call(
            "mget",
            lambda: self.client.mget(self.keys.page(page), self.keys.totals, self.keys.checkpoint),
        )
        return lookup(page, raw_page, raw_totals, raw_checkpoint)

    def lease_page(self, page: int) -> Lease | None:
        return self._take_lease(self.keys.lease(page), str(page))

    def lease_totals(self, page: int = 1) -> Lease | None:
        """The totals' fill lease (``page``: whose group's totals copy, on a cluster)."""
        return self._take_lease(self.keys.totals_lease, "")

    def _take_lease(self, lease_key: str, index_member: str) -> Lease | None:
        token = secrets.token_hex(8)
        answer = self._call(
            "lease",
            lambda: self.run_function(
                "lease_at",
                [lease_key, self.keys.index],
                [token, LEASE_MS, index_member, "", self.keys.gtid, self.keys.checkpoint],
            ),
        )
        taken_at, gtid, checkpoint = lease_answer(answer)
        return Lease(token, taken_at, gtid, checkpoint) if taken_at else None

    def fill_page(self, page: int, token: str, entry: PageEntry) -> bool:
        """Store the page if our lease is still live (no invalidation since we took it)."""
        return self._fill_if_leased(self.keys.lease(page), self.keys.page(page), token, entry)

    def fill_totals(self, token: str, entry: TotalsEntry, page: int = 1) -> bool:
        return self._fill_if_leased(self.keys.totals_lease, self.keys.totals, token, entry)

    def _fill_if_leased(
        self, lease_key: str, key: str, token: str, entry: PageEntry | TotalsEntry
    ) -> bool:
        stored = self._call(
            "fill",
            lambda: self.run_function(
                "fill", [lease_key, key], [token, entry.encode(), self.hard_ttl]
            ),
        )
        return bool(stored)

    def invalidate(self, change: Invalidation) -> bool:
        """Apply one invalidation step atomically (the INVALIDATE script); False when nothing
        was applied (its fencing token is no longer the current one, or the stored position is
        not the one it follows)."""
        return self.apply_step(change) >= 0

    def apply_step(self, change: Invalidation) -> int:
        """INVALIDATE's answer: >= 0 applied, ``FENCED`` or ``NOT_FOLLOWING`` (see keys.py)."""
        args = change.script_args(self.keys.base, self.hard_ttl)
        return int(self._call("invalidate", lambda: self.run_function("invalidate", [], args)))

    def claim_fence(self, token: int) -> bool:
        """A new leader's fence everywhere a step may land: on one server ACQUIRE_LEASE set it
        already; a cluster re-takes each group's (ClusterCache)."""
        return True

    def stored_position(self) -> str | None:
        """The binlog position stored with the invalidations, without its step number."""
        chain = self.stored_chain()
        return strip_step(chain) if chain is not None else None

    def stored_chain(self) -> str | None:
        """The ``binlog`` key as stored: the position and the step number that wrote it (the
        value the next step names as the one it follows)."""
        raw = self._call("get", lambda: self.client.get(self.keys.binlog_position))
        return cast(bytes, raw).decode() if raw else None

    def primary_identity(self) -> str:
        """Which primary answers (topology.primary_identity), through the breaker."""
        return self._call("info", lambda: topology.primary_identity(self.client))

    def read_at(self, page: int) -> tuple[Lookup, int]:
        """``read`` and Redis' ``TIME`` (ms) in one MULTI: the lookup and the moment it held."""

        def both() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.mget(self.keys.page(page), self.keys.totals, self.keys.checkpoint)
            pipe.time()
            return pipe.execute()

        (raw_page, raw_totals, raw_checkpoint), (seconds, micros) = self._call("multi", both)
        return (
            lookup(page, raw_page, raw_totals, raw_checkpoint),
            int(seconds) * 1000 + int(micros) // 1000,
        )

    def read_block_at(self, first: int, count: int) -> tuple[list[Lookup], int]:
        """Pages ``first``..``first + count - 1`` with the totals and the checkpoint, and Redis'
        ``TIME``, in one MULTI (the inspector's tour)."""
        numbers = range(first, first + count)

        def both() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.mget(*(self.keys.page(n) for n in numbers), self.keys.totals, self.keys.checkpoint)
            pipe.time()
            return pipe.execute()

        raw, clock = self._call("multi", both)
        return block(numbers, raw, clock)

    def sample_pages(self, count: int) -> list[int]:
        """Up to ``count`` distinct page numbers at random from the index (pages that have, or
        recently had, an entry): what the consistency inspector looks at."""
        raw = self._call("zrandmember", lambda: self.client.zrandmember(self.keys.index, count))
        return [int(member) for member in cast(list[bytes], raw or [])]

    def filled_since(self, since_ms: int) -> list[int]:
        """The indexed pages whose entry was read at or after ``since_ms`` (Redis clock), or
        that hold none (a fill may be under way): what a MySQL primary's lost commits can have
        reached (``Steps.after_promotion``)."""
        pages = [int(m) for m in cast(list[bytes], self._call("zrange", self._index) or [])]
        found: list[int] = []
        for start in range(0, len(pages), SCAN_BATCH):
            batch = pages[start : start + SCAN_BATCH]
            found += recent(batch, self._mget([self.keys.page(n) for n in batch]), since_ms)
        return found

    def _index(self) -> Any:
        return self.client.zrange(self.keys.index, 0, -1)

    def _mget(self, keys: list[str]) -> list[Any]:
        return cast(list[Any], self._call("mget", functools.partial(self.client.mget, keys)))

    def drop(self, page: int | None) -> None:
        """Delete one page entry and its lease (``None``: the totals), without telling the near
        caches: the inspector's repair where its Redis user may not PUBLISH."""
        if page is None:
            keys = (self.keys.totals, self.keys.totals_lease)
        else:
            keys = (self.keys.page(page), self.keys.lease(page))
        self._call("del", lambda: self.client.delete(*keys))

    def hot_pages(self, count: int) -> list[int]:
        """Up to ``count`` of the pages readers hit most lately, most hit first."""
        raw = self._call(
            "zrange", lambda: self.client.zrange(self.keys.hot, 0, count - 1, desc=True)
        )
        return [int(member) for member in cast(list[bytes], raw or [])]

    def note_inconsistency(self, at_ms: int) -> None:
        """Record (for ``/readyz``, 10 minutes) that the inspector confirmed an inconsistency."""
        self._call(
            "set", lambda: self.client.set(self.keys.inspector_found, at_ms, px=FOUND_KEEP_MS)
        )

    def last_inconsistency(self) -> int | None:
        """Redis ms of the last confirmed inconsistency in the last 10 minutes, or None."""
        raw = self._call("get", lambda: self.client.get(self.keys.inspector_found))
        return int(cast(bytes, raw)) if raw else None

    def checkpoint(self) -> int | None:
        """The invalidator's checkpoint (Redis-clock ms), or None if no invalidator ever wrote
        one under this namespace."""
        raw = self._call("get", lambda: self.client.get(self.keys.checkpoint))
        return int(cast(bytes, raw)) if raw else None

    def time(self) -> tuple[int, int]:
        """Redis ``TIME``: (seconds, microseconds)."""
        return self._call("time", self.client.time)

    def maxmemory_policy(self) -> str | None:
        """Redis' ``maxmemory-policy``: CONFIG GET, or INFO memory where an ACL (or a managed
        Redis) denies CONFIG; None if both are denied."""

        def read() -> str | None:
            try:
                found = cast(dict[str, str], self.client.config_get("maxmemory-policy"))
                return found.get("maxmemory-policy")
            except redis.ResponseError:  # NOPERM, or CONFIG renamed away
                pass
            try:
                info = self.client.info("memory")
            except redis.ResponseError:
                return None
            policy = info.get("maxmemory_policy")
            return str(policy) if policy is not None else None

        return self._call("config", read)

    def ping(self) -> None:
        """Readiness: one PING, through the breaker like every other call."""
        self._call("ping", self.client.ping)

    def shared_setting(self, name: str) -> str | None:
        """A field of the ``config`` HASH the API publishes (``ttl``, ``page_size``)."""
        raw = self._call("hget", lambda: self.client.hget(self.keys.config, name))
        return cast(bytes, raw).decode() if raw else None
