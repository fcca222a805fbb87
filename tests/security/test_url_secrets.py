"""Passwords in URLs: one with an unencoded ``/``, ``#``, ``?`` or ``@`` is read whole (or the URL
is refused with a message that shows no part of it), and ``orders-service config`` redacts the
credentials of every URL it prints, the JWKS URL's included."""

from __future__ import annotations

import pytest
from redis.connection import parse_url

from service.config import Settings, SettingsError
from tests.security.conftest import base_env, run_command

PASSWORDS = ["pa/ss#wo?rd", "abc#def", "ab?cd", "a/b", "x@y/z", "s3cr/#?@t"]


def pieces(password: str) -> list[str]:
    """Every 3-character piece of the password: none may be printed."""
    return [password[i : i + 3] for i in range(len(password) - 2)]


def shown(output: str, password: str) -> list[str]:
    return [piece for piece in pieces(password) if piece in output]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_database_url_password_with_reserved_characters_is_read_whole(password: str) -> None:
    settings = Settings.from_env(
        {"ORDERS_DATABASE_URL": f"mysql://orders:{password}@db.example:3307/shop"}
    )
    url = settings.database_url
    assert (url.user, url.password, url.host, url.port, url.database) == (
        "orders",
        password,
        "db.example",
        3307,
        "shop",
    )
    assert shown(url.redacted() + repr(settings), password) == []


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_redis_url_password_with_reserved_characters_is_read_whole(password: str) -> None:
    settings = Settings.from_env({"ORDERS_REDIS_URL": f"redis://api:{password}@cache:6380/2"})
    assert settings.redis_url.password == password
    options = parse_url(settings.redis_url.url)  # what redis-py connects with
    assert (options["username"], options["password"], options["host"], options["port"]) == (
        "api",
        password,
        "cache",
        6380,
    )
    assert options["db"] == 2
    assert shown(settings.redis_url.redacted(), password) == []


@pytest.mark.parametrize("password", PASSWORDS)
def test_config_prints_no_part_of_such_a_password_and_no_traceback(password: str) -> None:
    env = base_env(
        ORDERS_DATABASE_URL=f"mysql://orders:{password}@db:3306/orders",
        ORDERS_REDIS_URL=f"redis://api:{password}@cache:6379/0",
    )
    output = run_command(["config"], env)
    assert "ORDERS_REDIS_URL=redis://api:***@cache:6379/0" in output, output
    assert "ORDERS_DATABASE_URL=mysql://orders:***@db:3306/orders" in output, output
    assert "Traceback" not in output
    assert shown(output, password) == [], output


@pytest.mark.parametrize(
    "variable", ["ORDERS_DATABASE_URL", "ORDERS_REDIS_URL"], ids=["mysql", "redis"]
)
def test_a_url_that_cannot_be_read_is_refused_without_showing_its_password(variable: str) -> None:
    scheme = "mysql" if variable == "ORDERS_DATABASE_URL" else "redis"
    raw = f"{scheme}://user:pw1/secretpart@host:notaport/x"
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({variable: raw})
    assert variable in str(refused.value)
    assert shown(str(refused.value), "pw1/secretpart") == []
    output = run_command(["config"], base_env(**{variable: raw}))
    assert "Traceback" not in output
    assert shown(output, "pw1/secretpart") == [], output


def test_config_redacts_the_jwks_urls_credentials() -> None:
    env = base_env(
        ORDERS_AUTH_ISSUER="https://idp.example/",
        ORDERS_AUTH_AUDIENCE="orders",
        ORDERS_AUTH_JWKS_URL="https://reader:jw-Secret9@idp.example/jwks.json?token=tk-Secret7",
    )
    output = run_command(["config"], env)
    assert "ORDERS_AUTH_JWKS_URL=https://reader:***@idp.example/jwks.json?token=***" in output
    assert "jw-Secret9" not in output
    assert "tk-Secret7" not in output
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("ORDERS_")})
    assert {"jw-Secret9", "tk-Secret7"} <= set(settings.secret_values())  # scrubbed from logs
