"""The ORDERS_AUTH_* settings: off by default, refused when half set or unsafe."""

from __future__ import annotations

import pytest

from service.config import AUTH_ALGORITHMS, Settings, SettingsError

COMPLETE = {
    "ORDERS_AUTH_ISSUER": "https://idp.example.com/realms/shop",
    "ORDERS_AUTH_AUDIENCE": "orders-api",
    "ORDERS_AUTH_JWKS_URL": "https://idp.example.com/realms/shop/protocol/openid-connect/certs",
}


def test_auth_is_off_by_default() -> None:
    settings = Settings.from_env({})
    assert not settings.auth_enabled
    assert settings.auth_required_scope == "orders:read"
    assert settings.auth_algorithms == AUTH_ALGORITHMS


def test_auth_is_on_when_the_issuer_is_set() -> None:
    assert Settings.from_env(COMPLETE).auth_enabled


@pytest.mark.parametrize("missing", ["ORDERS_AUTH_AUDIENCE", "ORDERS_AUTH_JWKS_URL"])
def test_an_issuer_without_audience_or_jwks_url_refuses_to_start(missing: str) -> None:
    env = {k: v for k, v in COMPLETE.items() if k != missing}
    with pytest.raises(SettingsError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize("value", ["none", "HS256", "RS256,HS256", "", "rs256"])
def test_only_asymmetric_algorithms_may_be_allowed(value: str) -> None:
    with pytest.raises(SettingsError, match="ORDERS_AUTH_ALGORITHMS"):
        Settings.from_env({**COMPLETE, "ORDERS_AUTH_ALGORITHMS": value})


def test_an_algorithm_list_is_parsed() -> None:
    settings = Settings.from_env({**COMPLETE, "ORDERS_AUTH_ALGORITHMS": " ES256, RS256,ES256"})
    assert settings.auth_algorithms == ("ES256", "RS256")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "idp.example.com/certs", "https://"])
def test_the_jwks_url_must_be_http(url: str) -> None:
    with pytest.raises(SettingsError, match="ORDERS_AUTH_JWKS_URL"):
        Settings.from_env({**COMPLETE, "ORDERS_AUTH_JWKS_URL": url})


@pytest.mark.parametrize("scope", ["orders:read orders:write", 'a"b'])
def test_the_required_scope_is_one_scope(scope: str) -> None:
    with pytest.raises(SettingsError, match="ORDERS_AUTH_REQUIRED_SCOPE"):
        Settings.from_env({**COMPLETE, "ORDERS_AUTH_REQUIRED_SCOPE": scope})


def test_config_prints_the_algorithms_as_they_are_written() -> None:
    from click.testing import CliRunner

    from service.cli import main

    output = (
        CliRunner().invoke(main, ["config"], env={"ORDERS_AUTH_ALGORITHMS": "ES256,EdDSA"}).output
    )
    assert "ORDERS_AUTH_ALGORITHMS=ES256,EdDSA\n" in output


@pytest.mark.parametrize(
    "url",
    ["http://idp.example.com/jwks.json", "http://10.0.0.5/jwks", "http://127.0.0.1.nip.io/jwks"],
)
def test_a_jwks_url_over_plain_http_is_refused_unless_loopback_or_allowed(url: str) -> None:
    """Whoever answers a plain-HTTP key set URL mints tokens: https, except on loopback."""
    with pytest.raises(SettingsError, match="ORDERS_AUTH_JWKS_URL") as raised:
        Settings.from_env({**COMPLETE, "ORDERS_AUTH_JWKS_URL": url})
    assert "ORDERS_AUTH_JWKS_ALLOW_HTTP" in str(raised.value)
    allowed = {**COMPLETE, "ORDERS_AUTH_JWKS_URL": url, "ORDERS_AUTH_JWKS_ALLOW_HTTP": "true"}
    assert Settings.from_env(allowed).auth_jwks_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/jwks", "http://localhost/jwks", "http://[::1]:9/jwks"]
)
def test_a_loopback_jwks_url_may_be_plain_http(url: str) -> None:
    assert Settings.from_env({**COMPLETE, "ORDERS_AUTH_JWKS_URL": url}).auth_jwks_url == url


def test_a_withdrawn_key_stops_verifying_within_a_minute_by_default() -> None:
    """docs/security.md's promise: the key set's cache time plus one fetch's deadline."""
    settings = Settings.from_env(COMPLETE)
    assert settings.auth_jwks_cache_time + settings.auth_jwks_timeout <= 60
