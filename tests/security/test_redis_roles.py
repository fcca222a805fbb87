"""The Redis roles as ``orders-service grants ROLE --redis-prefix P`` prints them, applied to a
throwaway redis-server: what a compromised API pod must not do (forge the checkpoint, squat the
invalidator's lease, move the position or the fence, run Lua of its own) is refused, and what each
role must do still works, with the cache's functions loaded by the admin user."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from service import close_app, create_app
from service.cache import store
from service.cache.keys import DROP, LIBRARY, CacheKeys, Invalidation, function_library
from service.cache.store import CacheUnavailable, RedisCache
from service.config import Settings
from service.invalidation.leadership import Lease
from service.wiring import build_redis_cache
from tests.security.conftest import base_env, run_command
from tests.support.processes import ORDERS_SERVICE
from tests.support.servers import RedisServer

CHART = Path(__file__).resolve().parents[2] / "helm" / "orders"

pytestmark = pytest.mark.integration

PREFIX = "shop"
PASSWORD = "redis-role-pw-" + uuid.uuid4().hex[:8]
KEYS = CacheKeys(PREFIX, 10)
LEADER_KEYS = (KEYS.invalidator_lease, KEYS.invalidator_fence)


def printed_rules(role: str, user: str) -> list[str]:
    """The rules exactly as the command prints them (what an operator pastes)."""
    done = subprocess.run(
        [str(ORDERS_SERVICE), "grants", role, "--user", user, "--redis-prefix", PREFIX],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.split()


@pytest.fixture
def admin(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


@pytest.fixture
def role_url(redis_server: RedisServer, admin: redis.Redis) -> Callable[[str], str]:
    """``role_url(role)``: a user with the printed rules; returns its URL."""

    def make(role: str) -> str:
        user = f"{role}_{uuid.uuid4().hex[:6]}"
        admin.execute_command("ACL", "SETUSER", user, *printed_rules(role, user), f">{PASSWORD}")
        return f"redis://{user}:{PASSWORD}@127.0.0.1:{redis_server.port}/0"

    return make


@pytest.fixture
def loaded(admin: redis.Redis) -> str:
    """The cache's function library, loaded by the privileged user (as `load-functions` does)."""
    return store.load_functions(admin)


def listed(admin: redis.Redis) -> list[list[bytes]]:
    return admin.function_list()  # type: ignore[no-any-return]


def refused(client: redis.Redis, *command: object) -> bool:
    """True when Redis refuses the command for lack of permission (directly, or from inside a
    function, which runs with the caller's permissions)."""
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as exc:  # from a function: its redis.call refused
        # Redis 7: "... can't access/run ..."; Valkey 9: "ACL failure in script: ... no permissions"
        return any(
            words in str(exc) for words in ("can't access", "can't run", "ACL failure in script")
        )
    return False


def test_the_api_role_cannot_forge_the_checkpoint_move_the_position_or_fence_or_squat_the_lease(
    role_url: Callable[[str], str], loaded: str
) -> None:
    api = redis.Redis.from_url(role_url("api"))
    far_future = str(2**50)
    for command in (
        ("SET", KEYS.checkpoint, far_future),
        ("DEL", KEYS.checkpoint),
        ("SET", KEYS.binlog_position, "mysql-bin.999999:4"),
        ("DEL", KEYS.binlog_position),
        # an old GTID state would let a lagging replica fill an old row (docs/guarantees.md)
        ("SET", KEYS.gtid, "0-1-1"),
        ("INCR", KEYS.invalidator_fence),
        ("SET", KEYS.invalidator_fence, "999"),
        ("SET", KEYS.invalidator_lease, "squatter:1"),
        ("PUBLISH", KEYS.channel, f"c{far_future}"),
        # the invalidator's own functions, called by the API: they run with the API's rights
        ("FCALL", f"{loaded}_acquire_lease", 2, *LEADER_KEYS, "squatter", 60_000),
        ("FCALL", f"{loaded}_invalidate", 0, KEYS.base, "", "-", 60, "", "0", "", "", "", "1"),
        ("FCALL", f"{loaded}_invalidate", 0, KEYS.base, "", "-", 60, "", "", "", "", "0-1-1"),
    ):
        assert refused(api, *command), command
    api.close()
    assert (
        redis.Redis.from_url(role_url("invalidator")).get(KEYS.checkpoint) is None
    )  # nothing was written by the refused calls


@pytest.mark.parametrize("role", ["api", "invalidator"])
def test_no_role_runs_lua_of_its_own(
    role: str, role_url: Callable[[str], str], loaded: str
) -> None:
    client = redis.Redis.from_url(role_url(role))
    library = (
        f"#!lua name=evil_{uuid.uuid4().hex[:6]}\nredis.register_function('x', function() end)"
    )
    for command in (
        ("EVAL", "return 1", 0),
        ("SCRIPT", "LOAD", "return 1"),
        ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", 0),
        ("FUNCTION", "LOAD", library),
        ("FUNCTION", "DELETE", loaded),
        ("FUNCTION", "FLUSH"),
        ("FUNCTION", "RESTORE", b"x"),
    ):
        assert refused(client, *command), command
    client.close()


def test_the_api_role_serves_misses_fills_and_hits(
    role_url: Callable[[str], str], loaded: str, seeded_database_url: str
) -> None:
    url = role_url("api")
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": seeded_database_url,
            "ORDERS_REDIS_URL": url,
            "ORDERS_CACHE_PREFIX": PREFIX,
            "ORDERS_NEAR_CACHE": "false",
        }
    )
    app = create_app(settings)
    try:
        client = app.test_client()
        first, second = client.get("/orders/3"), client.get("/orders/3")
        assert (first.status_code, second.status_code) == (200, 200)
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
        assert client.get("/readyz").json["checks"]["redis"] == "ok"
    finally:
        close_app(app)
    api = redis.Redis.from_url(url)
    assert api.get(KEYS.totals) is not None
    assert api.get(KEYS.page(3)) is not None
    for command in (
        ("GET", "other:totals"),
        ("SET", "other:x", "1"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("KEYS", "*"),
        ("ACL", "LIST"),
    ):
        assert refused(api, *command), command
    api.close()


def redis_ms(cache: RedisCache) -> int:
    seconds, micros = cache.time()
    return seconds * 1000 + micros // 1000


def test_the_invalidator_role_leads_and_invalidates(
    role_url: Callable[[str], str], loaded: str
) -> None:
    url = role_url("invalidator")
    settings = Settings.from_env({"ORDERS_REDIS_URL": url, "ORDERS_CACHE_PREFIX": PREFIX})
    cache = build_redis_cache(settings)
    lease = Lease(cache, 5)
    assert lease.acquire()
    step = Invalidation(
        pages=frozenset((1, 2)),
        from_page=3,
        totals=DROP,
        position="mysql-bin.000001:4",
        checkpoint_ms=redis_ms(cache) - 5,  # Redis-clock ms: 5 ms ago
        fence=lease.token,
    )
    assert cache.invalidate(step)
    assert cache.stored_position() == "mysql-bin.000001:4"
    assert cache.checkpoint() is not None
    lease.release()
    cache.client.close()
    invalidator = redis.Redis.from_url(url)
    for command in (
        ("GET", "other:binlog"),
        ("FLUSHALL",),
        ("CONFIG", "SET", "save", ""),
        ("HSET", KEYS.config, "ttl", "1"),  # the API's settings are the API's to publish
    ):
        assert refused(invalidator, *command), command
    invalidator.close()


def test_an_app_role_reports_a_missing_library_and_does_not_load_it(
    role_url: Callable[[str], str], admin: redis.Redis
) -> None:
    settings = Settings.from_env(
        {"ORDERS_REDIS_URL": role_url("api"), "ORDERS_CACHE_PREFIX": PREFIX}
    )
    cache = build_redis_cache(settings)
    with pytest.raises(CacheUnavailable, match="load-functions"):
        cache.lease_page(1)
    cache.client.close()
    assert listed(admin) == []


def test_two_library_versions_serve_side_by_side_during_a_rolling_upgrade(
    admin: redis.Redis, loaded: str
) -> None:
    older = store.load_functions(admin, function_library("-- an older release\n"))
    assert older != loaded
    names = {
        dict(zip(e[::2], e[1::2], strict=True))[b"library_name"].decode() for e in listed(admin)
    }
    assert {older, loaded} <= names
    assert store.load_functions(admin) == loaded  # loading again is a no-op


def test_load_functions_needs_an_admin_and_says_so_in_one_line(
    redis_server: RedisServer, role_url: Callable[[str], str], admin: redis.Redis
) -> None:
    env = base_env(ORDERS_REDIS_URL=role_url("api"))
    output = run_command(["load-functions"], env)
    assert "Error: Redis at redis://" in output, output
    assert "Traceback" not in output
    assert PASSWORD not in output
    assert listed(admin) == []
    env = base_env(ORDERS_REDIS_URL=f"redis://127.0.0.1:{redis_server.port}/0")
    assert f"functions loaded: {LIBRARY.name}" in run_command(["load-functions"], env)
    assert run_command(["load-functions", "--print"], env) == LIBRARY.source


def test_the_charts_redis_loads_the_packages_library_at_start(
    redis_server: RedisServer, admin: redis.Redis, tmp_path: Path
) -> None:
    """The Redis container writes the library (files/redis-users.acl.sh) and its startup probe
    loads it as the admin: the file is the package's, and the probe's command loads it."""
    script = (CHART / "files" / "redis-users.acl.sh").read_text()
    written = re.search(r"<<'ORDERS_FUNCTIONS'\n(.*?)^ORDERS_FUNCTIONS$", script, re.S | re.M)
    assert written, "no functions heredoc"
    assert written.group(1) == LIBRARY.source
    template = (CHART / "templates" / "redis-statefulset.yaml").read_text()
    probe = re.search(r'startupProbe:\s*exec:\s*command: \["sh", "-c", "([^"]+)"\]', template)
    assert probe, "no startup probe"
    (tmp_path / "functions.lua").write_text(written.group(1))
    command = probe.group(1).replace("/run/redis", str(tmp_path))
    command = command.replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {redis_server.port}")
    subprocess.run(["sh", "-c", command], check=True, timeout=30)
    subprocess.run(["sh", "-c", command], check=True, timeout=30)  # every restart: again
    assert store.load_functions(admin) == LIBRARY.name
    assert [dict(zip(e[::2], e[1::2], strict=True))[b"library_name"] for e in listed(admin)] == [
        LIBRARY.name.encode()
    ]
