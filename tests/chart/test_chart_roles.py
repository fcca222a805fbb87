"""The chart's start-up and least-privilege pieces, run for real on this machine.

* The API pod's migrate init container, with its rendered command and env, is started BEFORE a
  throwaway MariaDB exists; the server then starts, the chart's MySQL init script (as the
  official image's entrypoint sources it) creates the role users, and the same process migrates.
  Before the fix the wait was a mysqladmin ping of the headless Service, which gives up at once on
  an unknown host, and a Job whose few attempts could run out during MySQL's first start.
* The per-role MySQL grants against that MariaDB: the API can read and cannot write; the
  invalidator reads the binlog and writes only its heartbeat table; migrate owns the schema.
* The Redis container's rendered ACL script run with sh, a redis-server started with the file:
  the API's real cache calls work as its ACL user, and keys, channels and commands outside the
  deployment's prefix are refused.

The in-cluster host names of the ClusterIP Services are replaced by this machine's addresses,
which is what the Services resolve to in a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import redis

from service import close_app, create_app
from service.config import Settings
from service.orders import repository, roles
from tests.support.chart import CHART, local_command, one, process_env, render
from tests.support.servers import MariaDBServer, free_port, redis_server_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSWORDS = {
    "mysql.auth.rootPassword": "root-pw",
    # A quote and a backslash (escaped once for --set-string) must survive the init script's SQL.
    "mysql.auth.apiPassword": "api-pw-'quoted\\\\",
    "mysql.auth.invalidatorPassword": "inv-pw",
    "mysql.auth.migratePassword": "mig-pw",
    "redis.auth.password": "admin-pw",
    "redis.auth.apiPassword": "redis-api-pw",
    "redis.auth.invalidatorPassword": "redis-inv-pw",
}
PREFIX = "rolestest"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    args = [a for key, value in PASSWORDS.items() for a in ("--set-string", f"{key}={value}")]
    return render([*args, "--set", f"config.cachePrefix={PREFIX}", "--set", "seed.enabled=true"])


def secret_value(docs: list[dict[str, Any]], ref: dict[str, str]) -> str:
    """What the kubelet reads from the release's Secret: the secrets Job writes the passwords
    given in the values (its hook Secret `<name>-given`) into it unchanged."""
    secret = one(docs, "Secret", f"{ref['name']}-given")
    return base64.b64decode(secret["data"][ref["key"]]).decode()


def env_of(
    docs: list[dict[str, Any]], container: dict[str, Any], hosts: dict[str, str]
) -> dict[str, str]:
    """The container's env as the kubelet builds it, Service names swapped for local addresses."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            value = item["value"]
        else:
            value = secret_value(docs, item["valueFrom"]["secretKeyRef"])
        for service, address in hosts.items():
            value = value.replace(service, address)
        env[item["name"]] = value
    return env


def api_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(docs, "Deployment", "orders")["spec"]["template"]["spec"])


def run_mysql_init_script(docs: list[dict[str, Any]], server: MariaDBServer) -> None:
    """What the official image's entrypoint does on an empty data directory: create
    MYSQL_DATABASE, then source /docker-entrypoint-initdb.d/*.sh with docker_process_sql."""
    statefulset = one(docs, "StatefulSet", "orders-mysql")["spec"]["template"]["spec"]
    container = statefulset["containers"][0]
    env = env_of(docs, container, {})
    script = one(docs, "ConfigMap", "orders-mysql-initdb")["data"]["10-orders-users.sh"]
    server.create_database(env["MYSQL_DATABASE"])
    shim = (
        "docker_process_sql() { mariadb --protocol=tcp -h127.0.0.1 "
        f'-P{server.port} -uroot "$@"; }}\n'
    )
    done = subprocess.run(
        ["bash", "-c", shim + script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDBServer]:
    server = MariaDBServer.create(binlog=True, start=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def migrated(rendered: list[dict[str, Any]], mariadb: MariaDBServer) -> dict[str, str]:
    """The migrate init container started before MariaDB; returns the hosts mapping used."""
    hosts = {"orders-mysql-primary:3306": f"127.0.0.1:{mariadb.port}"}
    (init,) = api_pod(rendered)["initContainers"]
    assert init["command"] == ["orders-service"]
    assert init["args"] == ["migrate"]
    env = env_of(rendered, init, hosts)
    assert env["ORDERS_DATABASE_URL"].startswith("mysql://orders_migrate@")
    migrate = subprocess.Popen(
        local_command(init),
        env={**process_env(env), "ORDERS_LOG_FORMAT": "json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert migrate.stdout is not None
        lines: list[str] = []
        for line in migrate.stdout:  # refused: nothing listens yet
            lines.append(line)
            if "mysql not ready; retrying" in line:
                break
        mariadb.start()
        for line in migrate.stdout:  # the server answers, but the role users do not exist yet
            lines.append(line)
            if "1045" in line:
                break
        run_mysql_init_script(rendered, mariadb)
        rest, _ = migrate.communicate(timeout=180)
    finally:
        if migrate.poll() is None:
            migrate.kill()
            migrate.wait()
    output = "".join(lines) + rest
    assert migrate.returncode == 0, output
    assert "migrations applied" in output
    assert "mig-pw" not in output
    return hosts


def login(server: MariaDBServer, user: str, password: str) -> Any:
    return pymysql.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password=password,
        database="orders",
        autocommit=True,
    )


def test_the_migrate_init_container_waits_for_a_mysql_that_starts_after_it(
    migrated: dict[str, str], mariadb: MariaDBServer
) -> None:
    assert mariadb.cli("SHOW TABLES FROM orders LIKE 'orders'").strip() == "orders"


def test_the_seed_job_runs_as_the_migrate_user_with_its_inline_settings(
    rendered: list[dict[str, Any]], migrated: dict[str, str], mariadb: MariaDBServer
) -> None:
    job = one(rendered, "Job", "orders-seed")["spec"]["template"]["spec"]
    for step in [*job["initContainers"], *job["containers"]]:
        command = local_command(step)
        if step["name"] == "seed":
            command[command.index("--orders") + 1] = "120"  # fewer rows, same command
        done = subprocess.run(
            command,
            env=process_env(env_of(rendered, step, migrated)),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert int(mariadb.cli("SELECT COUNT(*) FROM orders.orders").strip()) == 120


def test_each_mysql_role_has_only_its_grants(
    migrated: dict[str, str], mariadb: MariaDBServer
) -> None:
    api_password = "api-pw-'quoted\\"  # what the Secret holds
    api = login(mariadb, "orders_api", api_password)
    with contextlib.closing(api) as c, c.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM orders")
        for statement in (
            "UPDATE orders SET customer_name = 'x' WHERE id = 1",
            "DELETE FROM orders",
            "CREATE TABLE sneaky (id INT)",
        ):
            with pytest.raises(pymysql.err.OperationalError) as denied:
                cursor.execute(statement)
            assert denied.value.args[0] in {1142, 1044}, statement
        with pytest.raises(pymysql.err.OperationalError):
            cursor.execute("SHOW MASTER STATUS")  # no replication rights

    invalidator = login(mariadb, "orders_invalidator", PASSWORDS["mysql.auth.invalidatorPassword"])
    with contextlib.closing(invalidator) as c, c.cursor() as cursor:
        cursor.execute("SHOW MASTER STATUS")
        assert cursor.fetchone() is not None  # the binlog position it starts from
        cursor.execute("SELECT COUNT(*) FROM orders")
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS heartbeat (id INT PRIMARY KEY)"
        )  # migrate made it
        repository.write_heartbeat(cursor, 4242, 1)
        for statement in (
            "UPDATE orders SET customer_name = 'x' WHERE id = 1",
            "CREATE TABLE other (id INT)",
            "DROP TABLE heartbeat",
        ):
            with pytest.raises(pymysql.err.OperationalError) as denied:
                cursor.execute(statement)
            assert denied.value.args[0] == 1142, statement

    migrate = login(mariadb, "orders_migrate", PASSWORDS["mysql.auth.migratePassword"])
    with contextlib.closing(migrate) as c, c.cursor() as cursor:
        cursor.execute("CREATE TABLE scratch (id INT)")
        cursor.execute("DROP TABLE scratch")
        with pytest.raises(pymysql.err.OperationalError):
            cursor.execute("CREATE DATABASE elsewhere")
        with pytest.raises(pymysql.err.OperationalError):
            cursor.execute("SHOW MASTER STATUS")


# ---- Redis ACL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def acl_redis(rendered: list[dict[str, Any]], tmp_path_factory: Any) -> Iterator[int]:
    """redis-server started with the ACL file the rendered Redis container writes."""
    container = one(rendered, "StatefulSet", "orders-redis")["spec"]["template"]["spec"][
        "containers"
    ][0]
    workdir: Path = tmp_path_factory.mktemp("redis-acl")
    script = container["command"][2].replace("/run/redis", str(workdir))
    script = script.replace("exec redis-server", "exit 0; redis-server")
    env = env_of(rendered, container, {})
    done = subprocess.run(
        [shutil.which("sh") or "/bin/sh", "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    acl = (workdir / "users.acl").read_text()
    assert "redis-api-pw" not in acl  # stored as SHA-256 hashes
    port = free_port()
    server = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--aclfile",
            str(workdir / "users.acl"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        # The startup probe loads the cache's functions as the admin (the roles may not).
        probe = container["startupProbe"]["exec"]["command"][2].replace("/run/redis", str(workdir))
        probe = probe.replace("-h 127.0.0.1", f"-h 127.0.0.1 -p {port}")
        subprocess.run(["sh", "-c", probe], env={**os.environ, **env}, check=True, timeout=30)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_api_serves_pages_through_its_redis_acl_user(
    rendered: list[dict[str, Any]],
    migrated: dict[str, str],
    acl_redis: int,
    mariadb: MariaDBServer,
) -> None:
    hosts = {**migrated, "orders-redis-primary:6379": f"127.0.0.1:{acl_redis}"}
    env = env_of(rendered, api_pod(rendered)["containers"][0], hosts)
    assert env["ORDERS_REDIS_URL"].startswith("redis://orders_api@")
    mariadb.cli(
        "INSERT IGNORE INTO orders.orders (id, customer_name, customer_email, created_at) "
        "VALUES (1, 'A', 'a@example.com', NOW())"
    )
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("ORDERS_")})
    app = create_app(settings)
    try:
        client = app.test_client()
        first = client.get("/orders/1")
        assert first.status_code == 200, first.get_data(as_text=True)
        second = client.get("/orders/1")
        assert [first.headers["X-Cache"], second.headers["X-Cache"]] == ["MISS", "HIT"]
        # The probes answer on the admin port the chart sets (service/api/ports.py).
        admin = {"SERVER_PORT": env["ORDERS_ADMIN_PORT"]}
        ready = client.get("/readyz", environ_overrides=admin).get_json()
        assert ready["checks"]["redis"] == "ok"
    finally:
        close_app(app)


@pytest.mark.parametrize("role", ["api", "invalidator"])
def test_redis_users_reach_only_their_prefix_and_commands(acl_redis: int, role: str) -> None:
    password = PASSWORDS[f"redis.auth.{role}Password"]
    client = redis.Redis(port=acl_redis, username=f"orders_{role}", password=password)
    try:
        client.set(f"{PREFIX}:s10:page:probe", "1", ex=10)  # a key both roles may write
        assert client.get(f"{PREFIX}:s10:page:probe") == b"1"
        own_channel = f"{PREFIX}:s10:invalidations"
        if role == "invalidator":
            client.publish(own_channel, "x")  # only the invalidator announces invalidations
        else:
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.publish(own_channel, "x")
        for forbidden in (
            lambda: client.get("someone-else:key"),
            lambda: client.publish("someone-else:channel", "x"),
            client.flushall,
            lambda: client.config_get("*"),
            lambda: client.keys("*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()
    finally:
        client.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_redis, username=f"orders_{role}", password="wrong").ping()
    admin = redis.Redis(port=acl_redis, password=PASSWORDS["redis.auth.password"])
    assert admin.ping()
    admin.close()


@pytest.mark.parametrize("role", ["api", "invalidator"])
def test_the_charts_redis_acl_rules_are_the_packages(role: str) -> None:
    """helm/orders/files/redis-users.acl.sh spells each role's rules out (it runs in the Redis
    container, without the package): they must be what service/orders/roles.py says."""
    script = (CHART / "files" / "redis-users.acl.sh").read_text()
    found = re.search(rf'^orders_{role}_rules="([^"]+)"$', script, flags=re.MULTILINE)
    assert found, f"no orders_{role}_rules line"
    chart = found.group(1).replace("${ORDERS_REDIS_PREFIX}", "orders").split()
    package = roles.redis_acl(role, f"orders_{role}", "orders")
    ignore = {"reset", "on", "resetkeys", "resetchannels"}
    assert [r for r in chart if r not in ignore] == [r for r in package if r not in ignore]
