"""No password in clear without TLS, and nothing a server says in any failure output.

A fake MySQL (tests/support/misbehaving.py) completes a real handshake, then asks for the password
with an auth switch to ``mysql_clear_password``, as anyone answering on MySQL's address can: every
connection the service opens (the request path's, the invalidator's control, position and binlog
stream links, the one-shot commands') must refuse, so the password never reaches it. A second fake
answers with an error whose text carries a marker, a terminal escape and a forged log line: none
of it may reach a process's output or a /readyz body.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pymysql
import pytest

from service import close_app, create_app
from service.config import Settings
from service.invalidation import mysql_source as server
from service.invalidation.follower import BinlogFollower
from service.orders.database import connect
from tests.security.conftest import Launched, base_env, run_command
from tests.support.misbehaving import MisbehavingServer

pytestmark = pytest.mark.integration

PASSWORD = "clear-pw-" + uuid.uuid4().hex[:8]
MARKER = "SRV-SAYS-7f3a"


@pytest.fixture
def fake() -> Iterator[Callable[[str], MisbehavingServer]]:
    made: list[MisbehavingServer] = []

    def make(mode: str) -> MisbehavingServer:
        made.append(MisbehavingServer(mode))
        return made[-1]

    yield make
    for one in made:
        one.close()


def url_of(fake_server: MisbehavingServer) -> str:
    return f"mysql://orders:{PASSWORD}@127.0.0.1:{fake_server.port}/orders"


def test_the_request_path_never_sends_the_password_in_clear(
    fake: Callable[[str], MisbehavingServer],
) -> None:
    cleartext = fake("cleartext-mysql")
    url = Settings.from_env({"ORDERS_DATABASE_URL": url_of(cleartext)}).database_url
    with pytest.raises(pymysql.err.OperationalError, match="clear text"):
        connect(url, timeout=5)
    assert b"orders" in cleartext.received  # it did log in: the user name reached the server
    assert PASSWORD.encode() not in cleartext.received


def test_the_invalidators_connections_never_send_the_password_in_clear(
    fake: Callable[[str], MisbehavingServer],
) -> None:
    cleartext = fake("cleartext-mysql")
    source = Settings.from_env({"ORDERS_DATABASE_URL": url_of(cleartext)}).database_url
    with pytest.raises(pymysql.err.OperationalError, match="clear text"):
        server._connect(source, 5)
    follower = BinlogFollower(source, server_id=4243)
    login = {"host": "127.0.0.1", "port": cleartext.port, "user": "orders", "connect_timeout": 5}
    for database in ("information_schema", None):  # the library's control link, the stream
        with pytest.raises(pymysql.err.OperationalError, match="clear text"):
            follower._library_connect(**login, passwd=PASSWORD, db=database)
    assert cleartext.connections == 3
    assert PASSWORD.encode() not in cleartext.received


@pytest.mark.parametrize(
    "command", [["migrate"], ["seed", "--orders", "10"], ["recount"], ["invalidate"]]
)
@pytest.mark.parametrize("mode", ["cleartext-mysql", "error-mysql"])
def test_commands_send_no_clear_password_and_print_nothing_the_server_said(
    fake: Callable[[str], MisbehavingServer],
    launch: Callable[..., Launched],
    command: list[str],
    mode: str,
) -> None:
    mysql = fake(mode)
    env = base_env(ORDERS_DATABASE_URL=url_of(mysql), ORDERS_REDIS_URL="redis://127.0.0.1:1/0")
    if command == ["invalidate"]:
        process = launch(command, env)
        process.wait_for(lambda: mysql.connections >= 1 and "MySQL" in process.output(), "error")
        output = process.stop()
    else:
        output = run_command(command, env)
    assert mysql.connections >= 1
    assert PASSWORD.encode() not in mysql.received
    assert "MySQL" in output, output  # it says what failed...
    assert MARKER not in output, output  # ...in its own words
    assert "\x1b" not in output
    assert "forged" not in output


def test_readyz_says_mysql_is_unavailable_without_the_servers_words(
    fake: Callable[[str], MisbehavingServer],
) -> None:
    for mode in ("cleartext-mysql", "error-mysql"):
        mysql = fake(mode)
        settings = Settings.from_env(
            {
                "ORDERS_DATABASE_URL": url_of(mysql),
                "ORDERS_REDIS_URL": "redis://127.0.0.1:1/0",
                "ORDERS_CACHE_TIMEOUT": "0.2",
            }
        )
        app = create_app(settings)
        try:
            body = app.test_client().get("/readyz").get_data(as_text=True)
        finally:
            close_app(app)
        assert mysql.connections >= 1
        assert "unavailable" in body
        assert MARKER not in body, body
        assert PASSWORD.encode() not in mysql.received


def test_readyz_says_redis_is_unavailable_without_the_servers_words(
    fake: Callable[[str], MisbehavingServer], seeded_database_url: str
) -> None:
    redis_fake = fake("redis-error")
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": seeded_database_url,
            "ORDERS_REDIS_URL": f"redis://127.0.0.1:{redis_fake.port}/0",
        }
    )
    app = create_app(settings)
    try:
        body = app.test_client().get("/readyz").get_data(as_text=True)
    finally:
        close_app(app)
    assert redis_fake.connections >= 1
    assert '"redis":"unavailable' in body, body
    assert MARKER not in body, body
