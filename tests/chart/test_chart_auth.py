"""The chart's `auth` values become the API's ORDERS_AUTH_* variables, which the service accepts."""

from __future__ import annotations

from typing import Any

from service.config import SETTINGS, Settings
from tests.support.chart import AUTH, CHART, find, one, render, run, tool


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", []) if "value" in e}


def _api(docs: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(docs, "Deployment", "orders")
    return next(
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "api"
    )


def test_auth_is_off_by_default() -> None:
    for deployment in find(render(), "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert not [n for n in _env(container) if n.startswith("ORDERS_AUTH_")]


def test_auth_values_reach_the_api_as_settings_the_service_accepts() -> None:
    env = _env(_api(render(AUTH)))
    auth = {name: value for name, value in env.items() if name.startswith("ORDERS_AUTH_")}
    assert set(auth) <= {setting.env for setting in SETTINGS}
    settings = Settings.from_env(auth)
    assert settings.auth_enabled
    assert settings.auth_issuer == "https://idp.example.com/realms/shop"
    assert settings.auth_audience == "orders-api"
    assert settings.auth_required_scope == "orders:read"
    assert settings.auth_leeway == 30


def test_only_the_api_gets_the_auth_settings() -> None:
    docs = render(AUTH)
    for deployment in find(docs, "Deployment"):
        if deployment["metadata"]["name"] == "orders":
            continue
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert not [n for n in _env(container) if n.startswith("ORDERS_AUTH_")]


def test_an_issuer_without_audience_or_key_set_is_refused_by_the_schema() -> None:
    result = run(
        [tool("helm"), "template", "orders", str(CHART), "--set", "auth.issuer=https://idp/"]
    )
    assert result.returncode != 0
    assert "/auth/audience" in result.stderr
    assert "/auth/jwksUrl" in result.stderr


def test_a_plain_http_key_set_is_refused_at_render_unless_allowed() -> None:
    """The service refuses an http:// JWKS URL that is not loopback (whoever answers it mints
    tokens); the chart says so at render time and maps auth.jwksAllowHttp to the opt-in."""
    plain = (*AUTH[:4], "--set", "auth.jwksUrl=http://keycloak.idp:8080/certs")
    refused = run([tool("helm"), "template", "orders", str(CHART), *plain])
    assert refused.returncode != 0
    assert "auth.jwksAllowHttp" in refused.stderr
    env = _env(_api(render((*plain, "--set", "auth.jwksAllowHttp=true"))))
    assert env["ORDERS_AUTH_JWKS_ALLOW_HTTP"] == "true"
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("ORDERS_AUTH_")})
    assert settings.auth_enabled
    assert "ORDERS_AUTH_JWKS_ALLOW_HTTP" not in _env(_api(render(AUTH)))
