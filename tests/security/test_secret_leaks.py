"""Secrets never leave: with a known password in every form the settings accept, the real
processes are driven into their error paths by servers that misbehave, and everything they print
(stdout, stderr, every log line, tracebacks included) is searched for the password.

The forms: URL userinfo, ``?password=`` in the Redis URL, and the ``ORDERS_*_PASSWORD`` variables.
The password carries characters that JSON and URLs escape, so each escaped spelling is searched too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import orjson
import pytest
import requests

from tests.security.conftest import Launched, base_env, run_command
from tests.support.misbehaving import MisbehavingServer

pytestmark = pytest.mark.integration

PASSWORD = 'Zq8"leak/pw'
QUOTED = quote(PASSWORD, safe="")


def leaked_forms(output: str) -> list[str]:
    forms = {PASSWORD, QUOTED, orjson.dumps(PASSWORD).decode()[1:-1], "Zq8"}
    return [form for form in forms if form in output]


@pytest.fixture
def fake() -> Iterator[Callable[[str], MisbehavingServer]]:
    made: list[MisbehavingServer] = []

    def make(mode: str) -> MisbehavingServer:
        made.append(MisbehavingServer(mode))
        return made[-1]

    yield make
    for server in made:
        server.close()


def secret_env(form: str, mysql_port: int, redis_port: int, **extra: str) -> dict[str, str]:
    """Settings pointing at the given ports, the password given in ``form``."""
    mysql = f"127.0.0.1:{mysql_port}/orders"
    redis = f"127.0.0.1:{redis_port}/0"
    if form == "userinfo":
        urls = {
            "ORDERS_DATABASE_URL": f"mysql://orders:{QUOTED}@{mysql}",
            "ORDERS_REDIS_URL": f"redis://api:{QUOTED}@{redis}",
        }
    elif form == "query":
        urls = {
            "ORDERS_DATABASE_URL": f"mysql://orders:{QUOTED}@{mysql}",
            "ORDERS_REDIS_URL": f"redis://{redis}?password={QUOTED}",
        }
    else:
        urls = {
            "ORDERS_DATABASE_URL": f"mysql://orders@{mysql}",
            "ORDERS_DATABASE_PASSWORD": PASSWORD,
            "ORDERS_REDIS_URL": f"redis://{redis}",
            "ORDERS_REDIS_PASSWORD": PASSWORD,
        }
    return base_env(**urls, **extra)


def request_lines(output: str) -> list[dict[str, object]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            document = json.loads(line)
            if document.get("event") == "request":
                lines.append(document)
    return lines


@pytest.mark.parametrize(
    ("mysql_mode", "redis_mode", "form"),
    [
        ("truncated-mysql", "redis-garbage", "userinfo"),
        ("truncated-mysql", "close", "variables"),
        ("garbage", "redis-garbage", "query"),
        ("close", "close", "variables"),
        ("close", "redis-garbage", "query"),
    ],
)
def test_the_api_answers_503_and_never_logs_the_password(
    launch: Callable[..., Launched],
    fake: Callable[[str], MisbehavingServer],
    mysql_mode: str,
    redis_mode: str,
    form: str,
) -> None:
    mysql, redis = fake(mysql_mode), fake(redis_mode)
    web = launch(["serve"], secret_env(form, mysql.port, redis.port))
    web.wait_http()
    statuses = {}
    for path in ("/orders/1", "/orders/2", "/readyz", "/orders/1"):
        response = requests.get(web.url(path), timeout=10)
        statuses[path] = response.status_code
        assert PASSWORD not in response.text
        assert QUOTED not in response.text
    output = web.stop()

    assert mysql.connections > 0, "the fake MySQL was never reached: the test proved nothing"
    assert request_lines(output), f"no request was logged:\n{output[-2000:]}"
    assert leaked_forms(output) == [], output
    # Every driver failure is a clean 503 (needs database.py's exception mapping).
    assert statuses == {"/orders/1": 503, "/orders/2": 503, "/readyz": 503}, output[-3000:]


@pytest.mark.parametrize(
    ("mysql_mode", "form"),
    [("truncated-mysql", "userinfo"), ("garbage", "variables"), ("close", "query")],
)
def test_the_invalidator_never_logs_the_password(
    launch: Callable[..., Launched],
    fake: Callable[[str], MisbehavingServer],
    cache_prefix: str,
    mysql_mode: str,
    form: str,
) -> None:
    """The shared Redis (a private prefix, nothing stored) sends it straight to MySQL."""
    mysql = fake(mysql_mode)
    env = secret_env(form, mysql.port, 6379, ORDERS_CACHE_PREFIX=cache_prefix)
    if form != "variables":
        env["ORDERS_REDIS_URL"] = "redis://127.0.0.1:6379/0"
    else:
        env.pop("ORDERS_REDIS_PASSWORD")
    invalidator = launch(["invalidate"], env)
    _run_until_reached(invalidator, mysql)
    output = invalidator.stop()
    assert output.strip(), "the invalidator printed nothing: nothing was checked"
    assert leaked_forms(output) == [], output


def _run_until_reached(process: Launched, server: MisbehavingServer) -> str:
    """Wait until the process reached the fake server and said something, or exited."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.connections > 0 and (process.proc.poll() is not None or process.output()):
            time.sleep(0.5)  # let the error reach the log
            return process.output()
        time.sleep(0.05)
    pytest.fail(f"the process never reached the fake server:\n{process.output()[-2000:]}")


@pytest.mark.parametrize("command", [["migrate"], ["seed", "--orders", "10"], ["recount"]])
def test_one_shot_commands_never_print_the_password(
    fake: Callable[[str], MisbehavingServer], command: list[str]
) -> None:
    mysql, redis = fake("truncated-mysql"), fake("close")
    for form in ("userinfo", "variables"):
        output = run_command(command, secret_env(form, mysql.port, redis.port))
        assert mysql.connections > 0
        assert output.strip()
        assert leaked_forms(output) == [], output


@pytest.mark.parametrize("form", ["userinfo", "query", "variables"])
def test_config_prints_every_password_form_redacted(form: str) -> None:
    output = run_command(["config"], secret_env(form, 3306, 6379))
    assert "ORDERS_REDIS_URL=" in output
    assert "***" in output
    assert leaked_forms(output) == [], output


@pytest.mark.parametrize(
    ("replica_mode", "form"),
    [("truncated-mysql", "userinfo"), ("garbage", "variables"), ("close", "userinfo")],
)
def test_a_misbehaving_replica_never_gets_its_password_logged_or_shown(
    launch: Callable[..., Launched],
    fake: Callable[[str], MisbehavingServer],
    replica_mode: str,
    form: str,
) -> None:
    """ORDERS_DATABASE_REPLICA_URLS (userinfo) or ORDERS_DATABASE_REPLICA_PASSWORD: the
    replica's health check reaches a server that misbehaves; /readyz lists the replica by
    host:port and nothing printed or served holds the password."""
    mysql, redis, replica = fake("close"), fake("close"), fake(replica_mode)
    if form == "userinfo":
        replicas = {
            "ORDERS_DATABASE_REPLICA_URLS": f"mysql://api:{QUOTED}@127.0.0.1:{replica.port}/orders"
        }
    else:
        replicas = {
            "ORDERS_DATABASE_REPLICA_URLS": f"mysql://api@127.0.0.1:{replica.port}/orders",
            "ORDERS_DATABASE_REPLICA_PASSWORD": PASSWORD,
        }
    web = launch(["serve"], secret_env("variables", mysql.port, redis.port, **replicas))
    web.wait_http()
    _run_until_reached(web, replica)  # the replica check runs every 2 s in each worker
    ready = requests.get(web.url("/readyz"), timeout=10)
    assert f"127.0.0.1:{replica.port}" in ready.text
    assert PASSWORD not in ready.text
    assert QUOTED not in ready.text
    output = web.stop()
    assert leaked_forms(output) == [], output
